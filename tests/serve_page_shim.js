// Runs serve.js in Node against a live server, with the smallest DOM it needs (test_serve_curate.py, where no
// browser is installed): the page's HTML parsed into elements (ids, classes, data-*, the few selectors serve.js
// uses), fetch pointed at the server. argv: base URL, serve.html, serve.js, a script (an async function body
// given document, tab, tiles, until) whose result is printed as JSON.
"use strict";
const fs = require("fs");
const vm = require("vm");
const [base, htmlFile, jsFile, script] = process.argv.slice(2);
const VOID = new Set(["input", "meta", "link", "br", "img", "hr"]);

class El {
  constructor(tag) {
    Object.assign(this, { tagName: tag.toUpperCase(), children: [], parent: null, dataset: {}, listeners: {},
                          hidden: false, _text: "", attrs: {}, className: "", disabled: false, style: {} });
    this._value = "";
  }
  get value() {
    if (this.tagName === "SELECT" && this._value === "") {
      const o = this.querySelector("option");
      return o ? o.value : "";
    }
    return this._value;
  }
  set value(v) { this._value = String(v); }
  get classList() {
    const el = this;
    const list = () => el.className.split(/\s+/).filter(Boolean);
    return {
      contains: (c) => list().includes(c),
      add: (c) => { if (!list().includes(c)) el.className = [...list(), c].join(" "); },
      toggle: (c, on) => { const has = list().includes(c); on = on === undefined ? !has : on;
                           el.className = (on ? [...list().filter((x) => x !== c), c] : list().filter((x) => x !== c)).join(" "); },
    };
  }
  _detach(c) { if (c.parent) c.parent.children = c.parent.children.filter((x) => x !== c); c.parent = null; }
  appendChild(c) { this._detach(c); c.parent = this; this.children.push(c); return c; }
  append(...cs) { cs.forEach((c) => this.appendChild(typeof c === "string" ? document.createTextNode(c) : c)); }
  prepend(c) { this._detach(c); c.parent = this; this.children.unshift(c); }
  replaceChildren(...cs) { this.children.forEach((c) => { c.parent = null; }); this.children = []; this.append(...cs); }
  replaceWith(o) { const p = this.parent; const i = p.children.indexOf(this); this._detach(o); p.children[i] = o;
                   o.parent = p; this.parent = null; }
  remove() { this._detach(this); }
  set textContent(t) { this.children = []; this._text = String(t); }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set innerHTML(h) { this.children = []; this._text = String(h).replace(/<[^>]*>/g, ""); }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  getAttribute(k) { return this.attrs[k]; }
  addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
  dispatch(type) { (this.listeners[type] || []).forEach((f) => f({ preventDefault() {}, stopPropagation() {}, target: this })); }
  get id() { return this.attrs.id; }
  _all() { return this.children.flatMap((c) => [c, ...c._all()]); }
  querySelectorAll(sel) {
    const parts = sel.trim().split(/\s+/);
    return this._all().filter((el) => {
      if (!matches(el, parts[parts.length - 1])) return false;
      let i = parts.length - 2;
      for (let a = el.parent; a && i >= 0; a = a.parent) if (matches(a, parts[i])) i--;
      return i < 0;
    });
  }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
}

function matches(el, simple) {
  if (!(el instanceof El)) return false;
  const m = simple.match(/^([a-z]+)?((?:[#.][\w-]+)*)((?:\[[^\]]+\])*)$/i);
  if (!m) throw new Error(`selector ${simple}`);
  if (m[1] && el.tagName !== m[1].toUpperCase()) return false;
  for (const [, k, name] of m[2].matchAll(/([#.])([\w-]+)/g)) {
    if (k === "#" ? el.id !== name : !el.classList.contains(name)) return false;
  }
  for (const [, name, v] of m[3].matchAll(/\[([\w-]+)(?:="([^"]*)")?\]/g)) {
    const have = name.startsWith("data-") ? el.dataset[name.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())]
      : name === "value" ? el.value : el.attrs[name];
    if (have === undefined || (v !== undefined && String(have) !== v)) return false;
  }
  return true;
}

class Text extends El { constructor(t) { super("#text"); this._text = t; } }
const document = {
  createElement: (t) => new El(t),
  createTextNode: (t) => new Text(String(t)),
  getElementById: (id) => root.querySelector(`#${id}`),
  querySelectorAll: (s) => root.querySelectorAll(s),
  querySelector: (s) => root.querySelector(s),
};
const root = new El("html");
let at = root;
const html = fs.readFileSync(htmlFile, "utf8").replace(/<!--[\s\S]*?-->/g, "");
for (const [, close, tag, attrs, text] of html.matchAll(/<(\/?)([a-z0-9!]+)([^>]*)>|([^<]+)/gi)) {
  if (text !== undefined) { if (text.trim()) at.appendChild(new Text(text.trim())); continue; }
  if (tag.startsWith("!")) continue;
  if (close) { at = at.parent; continue; }
  const el = new El(tag);
  for (const [, k, v] of attrs.matchAll(/([\w-]+)(?:="([^"]*)")?/g)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("data-")) el.dataset[k.slice(5)] = v;
    else if (k === "hidden") el.hidden = true;
    else if (k === "value") { el.value = v; el.attrs.value = v; }
    else el.attrs[k] = v === undefined ? "" : v;
  }
  at.appendChild(el);
  if (!VOID.has(tag.toLowerCase())) at = el;
}
for (const o of root.querySelectorAll("option")) if (o.attrs.value === undefined) o.value = o.textContent;
  else o.value = o.attrs.value;
document.body = root.querySelector("body");
const ctx = { document, window: { addEventListener() {}, scrollTo() {} }, location: { hash: "" }, console,
              URLSearchParams, setTimeout, Promise, JSON, Number, String,
              fetch: (url, opts) => fetch(base + url, opts) };
ctx.window.document = document;
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(jsFile, "utf8"), ctx);
const until = async (f, what) => {
  for (let i = 0; i < 300; i++) { const v = f(); if (v) return v; await new Promise((r) => setTimeout(r, 20)); }
  throw new Error(`timed out: ${what}; status: ${document.getElementById("status").textContent}`);
};
const tab = (m) => document.querySelector(`#tabs button[data-mode="${m}"]`).dispatch("click");
const tiles = (sel) => document.querySelectorAll(`${sel} .tile`).map((t) => ({
  row: Number(t.dataset.row), badge: (t.querySelector(".badge") || { textContent: "" }).textContent.trim(),
  caption: t.querySelector("figcaption").textContent }));
(async () => {
  const out = await new Function("document", "tab", "tiles", "until", `return (async () => { ${fs.readFileSync(script, "utf8")} })();`)(document, tab, tiles, until);
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e.stack || e)); process.exit(1); });
