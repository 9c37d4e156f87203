// Command tlogcheck checks a creditflow log with the Go checksum database's own packages
// (golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog), an implementation nobody at
// creditflow wrote: it opens the C2SP checkpoint with the log's vkey, rebuilds the root from the
// C2SP tiles, proves leaves (from the entry bundles when given access, else from the level-0 tiles)
// and proves consistency from older trees. It prints one JSON object and exits non-zero on any failure.
//
// Build in GOPATH mode, nothing downloaded:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tlogcheck ./tests/conformance/tlogcheck
//
// Usage:
//
//	tlogcheck -vkey VKEY (-url http://host:port/log | -dir DIR) [-token T] [-entries]
//	          [-leaves 0,5,299] [-old 1,256] [-old-checkpoint FILE,...]
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

type leafResult struct {
	Index  int64  `json:"index"`
	Source string `json:"source"` // "bundle" (the entry itself) or "tile" (the level-0 tile's hash)
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

type oldResult struct {
	Size   int64  `json:"size"`
	Source string `json:"source"` // "checkpoint" (a signed older checkpoint) or "tiles" (root from this tree)
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

type result struct {
	OK           bool         `json:"ok"`
	Error        string       `json:"error,omitempty"`
	Origin       string       `json:"origin,omitempty"`
	Size         int64        `json:"size"`
	Root         string       `json:"root,omitempty"`
	TreeHashOK   bool         `json:"tree_hash_ok"`
	Leaves       []leafResult `json:"leaves"`
	Consistency  []oldResult  `json:"consistency"`
	TilesFetched int          `json:"tiles_fetched"`
}

// source fetches a C2SP path ("checkpoint", "tile/0/000", "tile/entries/000.p/5") from a URL or a directory.
type source struct {
	base   string
	dir    string
	token  string
	client *http.Client
}

func (s *source) fetch(path string) ([]byte, error) {
	if s.dir != "" {
		return os.ReadFile(filepath.Join(s.dir, filepath.FromSlash(path)))
	}
	req, err := http.NewRequest("GET", strings.TrimRight(s.base, "/")+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if s.token != "" && strings.HasPrefix(path, "tile/entries/") {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// c2spPath maps Go's tile path ("tile/8/L/NNN[.p/W]", "tile/8/data/NNN") to C2SP tlog-tiles'
// ("tile/L/NNN[.p/W]", "tile/entries/NNN"): the same tiles, without the height element.
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", t.H)
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		return "tile/entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// tileReader is a tlog.TileReader over C2SP paths, caching what it fetched. tlog.TileHashReader checks
// every tile it returns against the trusted tree before a hash of it is used.
type tileReader struct {
	src     *source
	cache   map[string][]byte
	fetched int
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		path := c2spPath(t)
		data, ok := r.cache[path]
		if !ok {
			var err error
			data, err = r.src.fetch(path)
			if err != nil {
				return nil, err
			}
			r.fetched++
			r.cache[path] = data
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// parseCheckpoint reads a C2SP checkpoint's text: origin, decimal size, base64 root, extension lines.
func parseCheckpoint(text string) (string, tlog.Tree, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", tlog.Tree{}, errors.New("checkpoint: want origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return lines[0], tlog.Tree{N: size, Hash: h}, nil
}

func openCheckpoint(data []byte, verifier note.Verifier) (string, tlog.Tree, error) {
	n, err := note.Open(data, note.VerifierList(verifier))
	if err != nil {
		return "", tlog.Tree{}, fmt.Errorf("note.Open: %v", err)
	}
	origin, tree, err := parseCheckpoint(n.Text)
	if err != nil {
		return "", tlog.Tree{}, err
	}
	if origin != verifier.Name() {
		return "", tlog.Tree{}, fmt.Errorf("checkpoint origin %q is not the key's name %q", origin, verifier.Name())
	}
	return origin, tree, nil
}

func bundleEntry(data []byte, offset int64) ([]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("bundle: truncated length")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("bundle: truncated entry")
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	if offset >= int64(len(entries)) {
		return nil, fmt.Errorf("bundle: %d entries, want entry %d", len(entries), offset)
	}
	return entries[offset], nil
}

func int64List(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(res *result) error {
	base := flag.String("url", "", "the log's tlog-tiles prefix, e.g. http://127.0.0.1:8000/log")
	dir := flag.String("dir", "", "a directory written by `creditflow log export-tiles`")
	vkey := flag.String("vkey", "", "the log's note verifier key (`creditflow log-key --vkey`)")
	token := flag.String("token", "", "API key for the entry bundles (operator or auditor)")
	useEntries := flag.Bool("entries", false, "prove leaves from the entries in the bundles")
	leavesFlag := flag.String("leaves", "", "leaf indices to prove (default: first, middle, last)")
	oldFlag := flag.String("old", "", "older tree sizes to prove consistency from (roots from the tiles)")
	oldCheckpoints := flag.String("old-checkpoint", "", "older checkpoint files to prove consistency from")
	flag.Parse()
	if (*base == "") == (*dir == "") || *vkey == "" {
		return errors.New("give -vkey and one of -url or -dir")
	}
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return fmt.Errorf("note.NewVerifier: %v", err)
	}
	src := &source{base: *base, dir: *dir, token: *token, client: &http.Client{Timeout: 30 * time.Second}}
	data, err := src.fetch("checkpoint")
	if err != nil {
		return err
	}
	origin, tree, err := openCheckpoint(data, verifier)
	if err != nil {
		return err
	}
	res.Origin, res.Size, res.Root = origin, tree.N, base64.StdEncoding.EncodeToString(tree.Hash[:])
	if tree.N == 0 {
		return errors.New("the log is empty: nothing to check")
	}
	reader := &tileReader{src: src, cache: map[string][]byte{}}
	defer func() { res.TilesFetched = reader.fetched }()
	hr := tlog.TileHashReader(tree, reader)

	th, err := tlog.TreeHash(tree.N, hr)
	if err != nil {
		return fmt.Errorf("tlog.TreeHash: %v", err)
	}
	if th != tree.Hash {
		return errors.New("the tiles' tree hash is not the checkpoint's root")
	}
	res.TreeHashOK = true

	indices, err := int64List(*leavesFlag)
	if err != nil {
		return err
	}
	if len(indices) == 0 {
		indices = []int64{0, tree.N / 2, tree.N - 1}
	}
	failed := false
	for _, i := range indices {
		lr := leafResult{Index: i, Source: "tile"}
		if err := proveLeaf(i, tree, hr, reader, *useEntries, &lr); err != nil {
			lr.Error, failed = err.Error(), true
		} else {
			lr.OK = true
		}
		res.Leaves = append(res.Leaves, lr)
	}

	olds, err := int64List(*oldFlag)
	if err != nil {
		return err
	}
	for _, o := range olds {
		or := oldResult{Size: o, Source: "tiles"}
		oldHash, err := tlog.TreeHash(o, hr)
		if err == nil {
			err = proveTree(tree, o, oldHash, hr)
		}
		if err != nil {
			or.Error, failed = err.Error(), true
		} else {
			or.OK = true
		}
		res.Consistency = append(res.Consistency, or)
	}
	for _, f := range strings.Split(*oldCheckpoints, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		or := oldResult{Source: "checkpoint"}
		old, err := os.ReadFile(f)
		var oldTree tlog.Tree
		if err == nil {
			_, oldTree, err = openCheckpoint(old, verifier)
			or.Size = oldTree.N
		}
		if err == nil {
			err = proveTree(tree, oldTree.N, oldTree.Hash, hr)
		}
		if err != nil {
			or.Error, failed = err.Error(), true
		} else {
			or.OK = true
		}
		res.Consistency = append(res.Consistency, or)
	}
	if failed {
		return errors.New("a proof failed")
	}
	return nil
}

func proveLeaf(i int64, tree tlog.Tree, hr tlog.HashReader, reader *tileReader, useEntries bool, lr *leafResult) error {
	if i < 0 || i >= tree.N {
		return fmt.Errorf("leaf %d is outside the tree of size %d", i, tree.N)
	}
	var leaf tlog.Hash
	if useEntries {
		lr.Source = "bundle"
		n := i / (1 << tileHeight)
		w := int64(1 << tileHeight)
		if (n+1)<<tileHeight > tree.N {
			w = tree.N - n<<tileHeight
		}
		bundle := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)}
		data, err := reader.src.fetch(c2spPath(bundle))
		if err != nil {
			return err
		}
		entry, err := bundleEntry(data, i-n<<tileHeight)
		if err != nil {
			return err
		}
		leaf = tlog.RecordHash(entry)
	} else {
		hashes, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			return fmt.Errorf("reading the leaf hash: %v", err)
		}
		leaf = hashes[0]
	}
	proof, err := tlog.ProveRecord(tree.N, i, hr)
	if err != nil {
		return fmt.Errorf("tlog.ProveRecord: %v", err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, i, leaf); err != nil {
		return fmt.Errorf("tlog.CheckRecord: %v", err)
	}
	return nil
}

func proveTree(tree tlog.Tree, old int64, oldHash tlog.Hash, hr tlog.HashReader) error {
	if old < 1 || old > tree.N {
		return fmt.Errorf("old size %d is outside 1..%d", old, tree.N)
	}
	proof, err := tlog.ProveTree(tree.N, old, hr)
	if err != nil {
		return fmt.Errorf("tlog.ProveTree: %v", err)
	}
	if err := tlog.CheckTree(proof, tree.N, tree.Hash, old, oldHash); err != nil {
		return fmt.Errorf("tlog.CheckTree: %v", err)
	}
	return nil
}

func main() {
	res := &result{Leaves: []leafResult{}, Consistency: []oldResult{}}
	err := run(res)
	if err != nil {
		res.Error = err.Error()
	}
	res.OK = err == nil
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if err != nil {
		os.Exit(1)
	}
}
