"""The pain.001.001.09 XSD comes from inside the installed `sepaxml` package, through one accessor."""

from __future__ import annotations

import pytest
from lxml import etree

from creditflow.financing import pain001


def test_the_xsd_is_where_we_expect_it_inside_sepaxml() -> None:
    path = pain001.pain001_xsd_path()
    assert path.is_file(), f"sepaxml no longer ships {path}"
    assert path.parts[-3:] == ("sepaxml", "schemas", "pain.001.001.09.xsd"), path
    schema_root = etree.parse(str(path)).getroot()
    assert schema_root.get("targetNamespace") == pain001.NAMESPACE


def test_a_missing_xsd_fails_loudly_naming_package_and_path() -> None:
    with pytest.raises(pain001.SchemaMissing, match=r"schemas/pain\.001\.001\.99\.xsd.*'sepaxml'"):
        pain001.pain001_xsd_path(resource=("schemas", "pain.001.001.99.xsd"))
    with pytest.raises(pain001.SchemaMissing, match="'no_such_sepaxml' package"):
        pain001.pain001_xsd_path(package="no_such_sepaxml")
