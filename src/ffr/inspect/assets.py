"""Style sheet and script of the inspector page (inlined into the HTML; no external files).

The script owns filtering and paging. Contract with `ffr.inspect.page`:
- ``<script id="cards-data" type="application/json">`` holds a list of
  ``{"o": outcome class, "l": 0/1 audit leak, "t": [error types], "s": step or null,
  "h": card HTML}``, one per request, in log order;
- filter state lives in the URL hash, e.g. ``#outcome=fixed&type=spatial&from=2&to=5&q=teapot&page=2``
  (also ``size`` = cards per page); the page reads it on load and writes it on every change,
  so a filtered view can be bookmarked and a headless browser can open one directly;
- only the current page's cards are in the DOM (``#cards``); ``#shown`` says
  "N of M requests match" and ``#pageinfo`` "page P of Q".
The "leak" outcome filter matches leak-class requests and patches the audit flags as leaking.
"""
from __future__ import annotations

CSS = """
:root { --fixed:#1a7f37; --not_fixed:#b35900; --no_patch:#6e7781; --leak:#cf222e; --mined:#0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; }
main { max-width: 1280px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 22px; margin: 4px 0 12px; } h2 { font-size: 17px; margin: 18px 0 8px; }
h4 { margin: 6px 0 4px; font-size: 13px; color: #57606a; text-transform: uppercase; letter-spacing: .03em; }
.summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
.panel { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; }
.panel img { max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; }
.panel table { width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { color: #57606a; font-weight: 600; white-space: nowrap; }
.controls { position: sticky; top: 0; z-index: 5; background: #fff; border: 1px solid #d0d7de; border-radius: 8px;
            padding: 8px 12px; margin: 16px 0 12px; display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
.controls label { font-weight: 600; color: #57606a; }
.controls input, .controls select, .controls button { font: inherit; padding: 3px 6px; }
.controls input[type=number] { width: 70px; } .controls input[type=search] { width: 220px; }
#shown { margin-left: auto; font-weight: 600; }
.card { background: #fff; border: 1px solid #d0d7de; border-left: 6px solid var(--no_patch); border-radius: 8px;
        padding: 10px 14px; margin: 0 0 14px; }
.card.fixed { border-left-color: var(--fixed); } .card.not_fixed { border-left-color: var(--not_fixed); }
.card.leak { border-left-color: var(--leak); } .card.mined { border-left-color: var(--mined); }
.card header { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 6px; }
.badge { color: #fff; border-radius: 10px; padding: 1px 9px; font-weight: 600; font-size: 12px;
         background: var(--no_patch); }
.badge.fixed { background: var(--fixed); } .badge.not_fixed { background: var(--not_fixed); }
.badge.leak { background: var(--leak); } .badge.mined { background: var(--mined); }
.tag { border: 1px solid #d0d7de; border-radius: 10px; padding: 0 7px; font-size: 12px; }
.step { font-weight: 600; } .sid { font-family: ui-monospace, monospace; font-size: 12px; }
.where { color: #6e7781; font-size: 12px; margin-left: auto; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; font: 13px/1.4 ui-monospace, Menlo, monospace; }
.question pre { font: 14px/1.45 system-ui, sans-serif; font-weight: 500; }
.options { margin: 2px 0; padding-left: 22px; list-style: none; } .meta { color: #57606a; margin: 4px 0; }
.strip { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
.frame { margin: 0; width: 148px; padding: 3px; border: 3px solid transparent; border-radius: 6px; }
.frame.key { border-color: #d4a72c; background: #fff8c5; }
.frame figcaption { font-size: 12px; color: #57606a; text-align: center; }
.frame.key figcaption { color: #7d4e00; font-weight: 700; }
.pic { position: relative; width: 100%; line-height: 0; }
.pic img, .pic .blank { width: 100%; display: block; border-radius: 3px; background: #d0d7de; }
.box { position: absolute; border: 2px solid #ff2d55; box-shadow: 0 0 0 1px #fff; line-height: 1; }
.box.clip { border-style: dashed; }
.box span { position: absolute; top: -1px; left: -1px; background: #ff2d55; color: #fff; font-size: 10px;
            padding: 0 3px; font-weight: 700; }
.cols { display: grid; grid-template-columns: 3fr 2fr; gap: 16px; }
@media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
.evidence { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 8px; }
.problem, .noframes { color: #cf222e; }
.pager { display: flex; gap: 10px; align-items: center; justify-content: center; margin: 10px 0; }
"""

JS = r"""
(function () {
  const DATA = JSON.parse(document.getElementById('cards-data').textContent);
  let text = null;  // lower-cased card text for the search box, built on first search
  const el = id => document.getElementById(id);
  const state = {outcome: '', type: '', from: '', to: '', q: '', page: 1, size: 50};

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    for (const k of Object.keys(state)) if (p.has(k)) state[k] = p.get(k);
    state.page = Math.max(1, parseInt(state.page, 10) || 1);
    state.size = Math.max(1, parseInt(state.size, 10) || 50);
    el('f-outcome').value = state.outcome; el('f-type').value = state.type; el('f-from').value = state.from;
    el('f-to').value = state.to; el('f-q').value = state.q; el('f-size').value = String(state.size);
  }
  function writeHash() {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v !== '' && !(k === 'page' && v === 1)
        && !(k === 'size' && v === 50)) p.set(k, v);
    history.replaceState(null, '', '#' + p.toString());
  }
  function matches(d, i) {
    if (state.outcome === 'leak') { if (d.o !== 'leak' && !d.l) return false; }
    else if (state.outcome && d.o !== state.outcome) return false;
    if (state.type === 'none') { if (d.t.length) return false; }
    else if (state.type && !d.t.includes(state.type)) return false;
    if (state.from !== '' && (d.s === null || d.s < Number(state.from))) return false;
    if (state.to !== '' && (d.s === null || d.s > Number(state.to))) return false;
    if (state.q) {
      if (!text) text = DATA.map(x => x.h.replace(/<[^>]*>/g, ' ').replace(/&amp;/g, '&').replace(/&lt;/g, '<')
                                       .replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#x27;/g, "'")
                                       .toLowerCase());
      if (!text[i].includes(state.q.toLowerCase())) return false;
    }
    return true;
  }
  function render() {
    const hits = [];
    DATA.forEach((d, i) => { if (matches(d, i)) hits.push(i); });
    const pages = Math.max(1, Math.ceil(hits.length / state.size));
    state.page = Math.min(state.page, pages);
    const start = (state.page - 1) * state.size;
    el('cards').innerHTML = hits.slice(start, start + state.size).map(i => DATA[i].h).join('');
    el('shown').textContent = hits.length + ' of ' + DATA.length + ' requests match';
    for (const id of ['pageinfo', 'pageinfo2'])
      el(id).textContent = 'page ' + state.page + ' of ' + pages +
        (hits.length ? ' (cards ' + (start + 1) + '\u2013' + Math.min(start + state.size, hits.length) + ')' : '');
    for (const id of ['prev', 'prev2']) el(id).disabled = state.page <= 1;
    for (const id of ['next', 'next2']) el(id).disabled = state.page >= pages;
    writeHash();
  }
  function bind(id, key, event) {
    el(id).addEventListener(event, () => { state[key] = el(id).value; state.page = 1;
      if (key === 'size') state.size = parseInt(state.size, 10) || 50; render(); });
  }
  bind('f-outcome', 'outcome', 'change'); bind('f-type', 'type', 'change'); bind('f-from', 'from', 'input');
  bind('f-to', 'to', 'input'); bind('f-q', 'q', 'input'); bind('f-size', 'size', 'change');
  const go = delta => () => { state.page += delta; render(); window.scrollTo(0, el('cards').offsetTop - 60); };
  for (const id of ['prev', 'prev2']) el(id).addEventListener('click', go(-1));
  for (const id of ['next', 'next2']) el(id).addEventListener('click', go(1));
  window.addEventListener('hashchange', () => { readHash(); render(); });
  readHash(); render();
})();
"""
