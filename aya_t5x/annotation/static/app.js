// The annotation pages' live feedback: character counters, and for re-annotations the
// character edit distance of prompt and completion from the pair being edited, updated
// as the contributor types. The server recomputes the distance on save (its value is
// the one stored, from rapidfuzz); the browser test checks the two agree.
"use strict";

// Levenshtein distance over Unicode code points (Array.from splits surrogate pairs the
// way Python's str iterates), by the bit-parallel algorithm of Myers (1999) in Hyyro's
// form for whole strings, on BigInt bit vectors.
function ayaEditDistance(first, second) {
  let a = Array.from(first);
  let b = Array.from(second);
  if (a.length < b.length) { [a, b] = [b, a]; }
  if (b.length === 0) { return a.length; }
  const m = a.length;
  const positions = new Map();
  a.forEach((ch, i) => {
    positions.set(ch, (positions.get(ch) || 0n) | (1n << BigInt(i)));
  });
  const mask = (1n << BigInt(m)) - 1n;
  const last = 1n << BigInt(m - 1);
  let pv = mask;
  let mv = 0n;
  let score = m;
  for (const ch of b) {
    const eq = positions.get(ch) || 0n;
    const xv = eq | mv;
    const xh = (((eq & pv) + pv) ^ pv) | eq;
    let ph = mv | (~(xh | pv) & mask);
    let mh = pv & xh;
    if (ph & last) { score += 1; } else if (mh & last) { score -= 1; }
    ph = ((ph << 1n) | 1n) & mask;
    mh = (mh << 1n) & mask;
    pv = mh | (~(xv | ph) & mask);
    mv = ph & xv;
  }
  return score;
}
window.ayaEditDistance = ayaEditDistance;

function codePoints(text) {
  return Array.from(text).length;
}

function originalText(textarea) {
  const source = document.getElementById(textarea.dataset.original);
  // textContent of a <pre> is the text itself, entities decoded; the value of a textarea
  // uses \n line breaks, as the server normalizes them.
  return source ? source.textContent : "";
}

function update() {
  let total = 0;
  let editing = false;
  for (const area of document.querySelectorAll("textarea[data-limit]")) {
    const count = document.getElementById("count-" + area.id);
    const n = codePoints(area.value);
    if (count) {
      count.textContent = String(n);
      count.classList.toggle("over", n > Number(area.dataset.limit));
    }
    if (area.dataset.original) {
      editing = true;
      const distance = ayaEditDistance(originalText(area), area.value);
      total += distance;
      const out = document.getElementById("distance-" + area.id);
      if (out) { out.textContent = String(distance); }
    }
  }
  const totalOut = document.getElementById("distance-total");
  if (editing && totalOut) {
    totalOut.textContent = String(total);
    totalOut.classList.toggle("enough", total >= 5);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const area of document.querySelectorAll("textarea[data-limit]")) {
    area.addEventListener("input", update);
  }
  update();
});
