// creditflow pages: helpers shared by every page (no framework, no build step).
"use strict";

/** The session's CSRF token, which every state-changing API call from a page must send. */
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

/** Call the JSON API as the signed-in user; a problem+json answer becomes an Error with its detail. */
async function api(method, path, body) {
  const headers = { "Accept": "application/json", "X-CSRF-Token": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((data && (data.detail || data.title)) || response.statusText);
    error.code = data && data.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Data a template put in <script type="application/json" id="...">. */
function pageData(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

/** 123456 fen -> "1,234.56" (integers only: no float rounding on money). */
function yuan(minor) {
  const negative = minor < 0;
  const fen = Math.abs(Math.trunc(minor));
  const whole = Math.floor(fen / 100).toLocaleString("en-US");
  const cents = String(fen % 100).padStart(2, "0");
  return (negative ? "-" : "") + whole + "." + cents;
}

window.creditflow = { api, csrfToken, pageData, yuan };
