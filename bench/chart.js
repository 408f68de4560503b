#!/usr/bin/env node
// chart.js - the relay benchmark's scaling curves as one self-contained SVG.
//
//   node bench/chart.js OUT.svg RUN1.json [RUN2.json ...]
//
// Each RUN file is what bench/loadgen writes for one target:
//   {"target": "tabib-relay" | "tabib-echo" | "janus-echo" | "udp-forward",
//    "label": "Tabib relay", "streams_per_unit": 2,
//    "steps": [{"units": 10, "relayed_pps": 3500.0, "server_cpu_share": 0.12,
//               "cpu_us_per_packet": 34.2, "delay_us": {"p50": 80, "p99": 400, "p999": 900},
//               "loss": 0.0, "loadgen_cpu_share": 0.3}, ...]}
//
// Three panels and a legend, in a 2 x 2 grid sized to be read at 800 px wide:
//   (a) relayed packets/s against the server's CPU, as a share of one core: the scaling curve;
//   (b) server CPU µs per relayed packet against relayed packets/s;
//   (c) added delay, p99, in µs on a log scale, against relayed packets/s.
// A point whose values are missing, zero or not numbers is left out of the panel that
// needs them. A hollow marker is a step that lost 1% of its packets or more: where a
// curve bends, that says whether the target was saturated.
//
// Each run gets a colour (Okabe-Ito, safe for colour-blind readers) and a marker shape,
// so the chart also reads in grey; a target keeps the same style from chart to chart.
// No dependencies: Node.js 20 and its standard library only.
'use strict';

const fs = require('fs');
const path = require('path');

const W = 800;
const H = 664;
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const INK = '#1a1a1a';
const MUTED = '#555555';
const GRID = '#e4e4e4';
const LOSS_HOLLOW = 0.01;

// Colour and shape per style; a target's preferred style first, then the next free one.
const STYLES = [
  { color: '#0072B2', shape: 'circle' },
  { color: '#D55E00', shape: 'square' },
  { color: '#009E73', shape: 'triangle' },
  { color: '#000000', shape: 'diamond' },
  { color: '#CC79A7', shape: 'triangle-down' },
  { color: '#E69F00', shape: 'cross' },
  { color: '#56B4E9', shape: 'plus' },
];
const TARGET_STYLE = { 'tabib-relay': 0, 'janus-echo': 1, 'tabib-echo': 2, 'udp-forward': 3 };
const UNIT_NOUN = {
  'tabib-relay': 'consultations',
  'tabib-echo': 'echo sessions',
  'janus-echo': 'echo sessions',
  'udp-forward': 'pairs',
};

function usage() {
  process.stderr.write('usage: node bench/chart.js OUT.svg RUN1.json [RUN2.json ...]\n');
  process.exit(2);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// A positive finite number, or null (missing, zero, negative or not a number).
function positive(v) {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null;
}

// n with "," between thousands and at most `decimals` digits after the point.
function fmt(n, decimals = 0) {
  const neg = n < 0;
  let [int, frac] = Math.abs(n).toFixed(decimals).split('.');
  int = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  if (frac) frac = frac.replace(/0+$/, '');
  return (neg ? '−' : '') + int + (frac ? '.' + frac : '');
}

// Ticks for a linear axis from 0 (or lo) to at least hi: about `count` steps of 1, 2 or 5 × 10^k.
function linearTicks(lo, hi, count) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / mag === 2.5 ? 1 : 0));
  const top = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let v = lo; v <= top + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
  return { min: lo, max: top, ticks, decimals };
}

// Ticks for a log axis: whole decades around [lo, hi], labels at 1, 10, 100...; minor lines at
// 2 and 5, labelled too when the axis spans no more than two decades.
function logTicks(lo, hi) {
  let a = Math.floor(Math.log10(lo) + 1e-9);
  let b = Math.ceil(Math.log10(hi) - 1e-9);
  if (b <= a) b = a + 1;
  const ticks = [];
  const minor = [];
  for (let e = a; e <= b; e++) {
    ticks.push(Math.pow(10, e));
    if (e < b) minor.push(2 * Math.pow(10, e), 5 * Math.pow(10, e));
  }
  return {
    min: Math.pow(10, a), max: Math.pow(10, b), ticks, minor,
    labelMinor: b - a <= 2, decimals: Math.max(0, -a),
  };
}

// SVG for one marker of `shape` centred at (x, y).
function marker(shape, x, y, color, hollow, title) {
  const r = 5;
  const fill = hollow ? '#ffffff' : color;
  const common = `fill="${fill}" stroke="${color}" stroke-width="${hollow ? 2 : 1.2}"`;
  let body;
  const pts = (list) => list.map(([dx, dy]) => `${(x + dx).toFixed(1)},${(y + dy).toFixed(1)}`).join(' ');
  switch (shape) {
    case 'square':
      body = `<rect x="${(x - r * 0.9).toFixed(1)}" y="${(y - r * 0.9).toFixed(1)}" width="${(r * 1.8).toFixed(1)}" height="${(r * 1.8).toFixed(1)}" ${common}/>`;
      break;
    case 'triangle':
      body = `<polygon points="${pts([[0, -r * 1.2], [r * 1.1, r * 0.8], [-r * 1.1, r * 0.8]])}" ${common}/>`;
      break;
    case 'triangle-down':
      body = `<polygon points="${pts([[0, r * 1.2], [r * 1.1, -r * 0.8], [-r * 1.1, -r * 0.8]])}" ${common}/>`;
      break;
    case 'diamond':
      body = `<polygon points="${pts([[0, -r * 1.3], [r * 1.1, 0], [0, r * 1.3], [-r * 1.1, 0]])}" ${common}/>`;
      break;
    case 'cross':
    case 'plus': {
      // Line shapes have no inside: hollow is drawn thinner with a white core.
      const d = shape === 'cross'
        ? `M${x - r},${y - r}L${x + r},${y + r}M${x - r},${y + r}L${x + r},${y - r}`
        : `M${x - r * 1.2},${y}L${x + r * 1.2},${y}M${x},${y - r * 1.2}L${x},${y + r * 1.2}`;
      body = `<path d="${d}" stroke="${color}" stroke-width="3" stroke-linecap="round" fill="none"/>` +
        (hollow ? `<path d="${d}" stroke="#ffffff" stroke-width="1" stroke-linecap="round" fill="none"/>` : '');
      break;
    }
    default:
      body = `<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r}" ${common}/>`;
  }
  return title ? `<g>${body}<title>${esc(title)}</title></g>` : body;
}

// Reads and checks one run file; exits with a message when it cannot be used.
function loadRun(file) {
  let run;
  try {
    run = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    process.stderr.write(`chart.js: ${file}: ${e.message}\n`);
    process.exit(1);
  }
  if (!run || !Array.isArray(run.steps)) {
    process.stderr.write(`chart.js: ${file}: no "steps" array\n`);
    process.exit(1);
  }
  const steps = run.steps
    .filter((s) => s && typeof s === 'object')
    .slice()
    .sort((p, q) => (positive(p.units) || 0) - (positive(q.units) || 0));
  return {
    file,
    target: typeof run.target === 'string' ? run.target : '',
    label: typeof run.label === 'string' && run.label ? run.label : path.basename(file, '.json'),
    streamsPerUnit: positive(run.streams_per_unit),
    steps,
  };
}

function assignStyles(runs) {
  const used = new Set();
  for (const run of runs) {
    const want = TARGET_STYLE[run.target];
    if (want !== undefined && !used.has(want)) {
      run.style = STYLES[want];
      used.add(want);
    }
  }
  for (const run of runs) {
    if (run.style) continue;
    let i = STYLES.findIndex((_, k) => !used.has(k));
    if (i < 0) i = used.size % STYLES.length;
    used.add(i);
    run.style = STYLES[i];
  }
}

// One panel: axes, grid, ticks, labels and every run's curve, inside the box (x0, y0, w, h).
function panel(box, spec, runs) {
  const out = [];
  const pad = { left: 70, right: 32, top: 34, bottom: 48 };
  const px = box.x + pad.left;
  const py = box.y + pad.top;
  const pw = box.w - pad.left - pad.right;
  const ph = box.h - pad.top - pad.bottom;

  const series = runs.map((run) => ({
    run,
    points: run.steps
      .map((s) => ({ x: spec.x(s), y: spec.y(s), step: s }))
      .filter((p) => p.x !== null && p.y !== null),
  }));
  const all = series.flatMap((s) => s.points);

  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  // A little room past the last point, except that (a) stops at one core when it can.
  const xMax = xs.length ? Math.max(...xs) : 0;
  const xHi = spec.xMinMax && xMax <= spec.xMinMax ? spec.xMinMax : xMax * 1.04;
  const xAxis = linearTicks(0, xHi || 1, 5);
  const yAxis = spec.yLog
    ? logTicks(ys.length ? Math.min(...ys) : 10, ys.length ? Math.max(...ys) : 1000)
    : linearTicks(0, (ys.length ? Math.max(...ys) * 1.05 : 0) || 1, 5);
  const sx = (v) => px + ((v - xAxis.min) / (xAxis.max - xAxis.min)) * pw;
  const sy = spec.yLog
    ? (v) => py + ph - ((Math.log10(v) - Math.log10(yAxis.min)) / (Math.log10(yAxis.max) - Math.log10(yAxis.min))) * ph
    : (v) => py + ph - ((v - yAxis.min) / (yAxis.max - yAxis.min)) * ph;

  out.push(`<g aria-label="${esc(spec.title)}">`);
  out.push(`<text x="${box.x + 8}" y="${box.y + 20}" font-size="14.5" font-weight="700" fill="${INK}">${esc(spec.title)}</text>`);
  // grid and ticks
  for (const v of yAxis.minor || []) {
    const y = sy(v).toFixed(1);
    out.push(`<line x1="${px}" x2="${px + pw}" y1="${y}" y2="${y}" stroke="${GRID}" stroke-width="1" stroke-dasharray="2 3"/>`);
    if (yAxis.labelMinor) {
      out.push(`<text x="${px - 7}" y="${y}" dy="0.35em" text-anchor="end" font-size="11" fill="${MUTED}">${fmt(v, yAxis.decimals)}</text>`);
    }
  }
  for (const v of yAxis.ticks) {
    const y = sy(v).toFixed(1);
    out.push(`<line x1="${px}" x2="${px + pw}" y1="${y}" y2="${y}" stroke="${GRID}" stroke-width="1"/>`);
    out.push(`<text x="${px - 7}" y="${y}" dy="0.35em" text-anchor="end" font-size="12" fill="${MUTED}">${fmt(v, yAxis.decimals)}</text>`);
  }
  for (const v of xAxis.ticks) {
    const x = sx(v).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${py}" y2="${py + ph}" stroke="${GRID}" stroke-width="1"/>`);
    out.push(`<text x="${x}" y="${py + ph + 17}" text-anchor="middle" font-size="12" fill="${MUTED}">${fmt(v, xAxis.decimals)}</text>`);
  }
  out.push(`<rect x="${px}" y="${py}" width="${pw}" height="${ph}" fill="none" stroke="#999999" stroke-width="1"/>`);
  // axis labels
  out.push(`<text x="${px + pw / 2}" y="${py + ph + 38}" text-anchor="middle" font-size="12.5" fill="${INK}">${esc(spec.xLabel)}</text>`);
  const ly = py + ph / 2;
  out.push(`<text transform="translate(${box.x + 14} ${ly}) rotate(-90)" text-anchor="middle" font-size="12.5" fill="${INK}">${esc(spec.yLabel)}</text>`);

  if (!all.length) {
    out.push(`<text x="${px + pw / 2}" y="${py + ph / 2}" text-anchor="middle" font-size="13" fill="${MUTED}">no data</text>`);
  }
  // curves: a line through each run's points in step order, then its markers on top
  out.push(`<g clip-path="url(#clip-${spec.id})">`);
  for (const { run, points } of series) {
    if (points.length > 1) {
      const d = points.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join('');
      out.push(`<path d="${d}" fill="none" stroke="${run.style.color}" stroke-width="2" stroke-linejoin="round" opacity="0.85"/>`);
    }
  }
  out.push('</g>');
  for (const { run, points } of series) {
    for (const p of points) {
      const s = p.step;
      const hollow = typeof s.loss === 'number' && s.loss >= LOSS_HOLLOW;
      const title = `${run.label}, ${fmt(s.units || 0)} ${UNIT_NOUN[run.target] || 'units'}: ` +
        `${spec.xName} ${fmt(p.x, spec.xDecimals)}, ${spec.yName} ${fmt(p.y, spec.yDecimals)}` +
        (typeof s.loss === 'number' ? `, loss ${fmt(s.loss * 100, 2)}%` : '');
      out.push(marker(run.style.shape, sx(p.x), sy(p.y), run.style.color, hollow, title));
    }
  }
  out.push('</g>');
  const defs = `<clipPath id="clip-${spec.id}"><rect x="${px}" y="${py}" width="${pw}" height="${ph}"/></clipPath>`;
  return { svg: out.join('\n'), defs };
}

// The legend in the fourth cell: one entry per run, then how to read the markers.
function legend(box, runs) {
  const out = [];
  let y = box.y + 20;
  out.push(`<text x="${box.x + 8}" y="${y}" font-size="14.5" font-weight="700" fill="${INK}">Runs</text>`);
  y += 30;
  for (const run of runs) {
    const x = box.x + 14;
    out.push(`<line x1="${x}" x2="${x + 36}" y1="${y}" y2="${y}" stroke="${run.style.color}" stroke-width="2"/>`);
    out.push(marker(run.style.shape, x + 18, y, run.style.color, false, null));
    out.push(`<text x="${x + 48}" y="${y}" dy="0.35em" font-size="13.5" font-weight="600" fill="${INK}">${esc(run.label)}</text>`);
    const units = run.steps.map((s) => positive(s.units)).filter((u) => u !== null);
    const noun = UNIT_NOUN[run.target] || 'units';
    const parts = [];
    if (run.target) parts.push(run.target);
    if (units.length) parts.push(`${fmt(Math.min(...units))}–${fmt(Math.max(...units))} ${noun}`);
    if (run.streamsPerUnit) parts.push(`${fmt(run.streamsPerUnit)} streams each`);
    out.push(`<text x="${x + 48}" y="${y + 17}" dy="0.35em" font-size="12" fill="${MUTED}">${esc(parts.join(' · '))}</text>`);
    y += 44;
  }
  y += 4;
  const notes = [
    'Each point is one load step; lines join the steps in order.',
    'Server CPU: the server process only, as bench/loadgen measures it.',
  ];
  for (const n of notes) {
    out.push(`<text x="${box.x + 14}" y="${y}" font-size="12" fill="${MUTED}">${esc(n)}</text>`);
    y += 18;
  }
  out.push(marker('circle', box.x + 20, y - 4, MUTED, true, null));
  out.push(`<text x="${box.x + 32}" y="${y - 4}" dy="0.35em" font-size="12" fill="${MUTED}">hollow: the step lost ${fmt(LOSS_HOLLOW * 100)}% of its packets or more</text>`);
  return out.join('\n');
}

function main(argv) {
  if (argv.length < 2) usage();
  const [outFile, ...files] = argv;
  if (!outFile.endsWith('.svg')) usage();
  const runs = files.map(loadRun);
  assignStyles(runs);

  const pps = (s) => positive(s.relayed_pps);
  const cellW = W / 2;
  const cellH = (H - 50) / 2;
  const top = 46;
  const specs = [
    {
      id: 'a', title: '(a) Packets relayed against server CPU',
      x: (s) => positive(s.server_cpu_share), y: pps, xMinMax: 1,
      xLabel: 'server CPU, share of one core', yLabel: 'relayed packets/s',
      xName: 'CPU', yName: 'packets/s', xDecimals: 2, yDecimals: 0,
    },
    {
      id: 'b', title: '(b) Server CPU per relayed packet',
      x: pps, y: (s) => positive(s.cpu_us_per_packet),
      xLabel: 'relayed packets/s', yLabel: 'CPU per packet (µs)',
      xName: 'packets/s', yName: 'µs/packet', xDecimals: 0, yDecimals: 1,
    },
    {
      id: 'c', title: '(c) Added delay, p99 (log scale)',
      x: pps, y: (s) => positive(s.delay_us && s.delay_us.p99), yLog: true,
      xLabel: 'relayed packets/s', yLabel: 'p99 delay (µs)',
      xName: 'packets/s', yName: 'p99 µs', xDecimals: 0, yDecimals: 0,
    },
  ];
  const boxes = [
    { x: 0, y: top, w: cellW, h: cellH },
    { x: cellW, y: top, w: cellW, h: cellH },
    { x: 0, y: top + cellH, w: cellW, h: cellH },
  ];
  const panels = specs.map((spec, i) => panel(boxes[i], spec, runs));
  const names = runs.map((r) => r.label).join(', ');

  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-labelledby="t d" font-family="${esc(FONT)}">`,
    `<title id="t">Relay benchmark: ${esc(names)}</title>`,
    `<desc id="d">Three panels: relayed packets per second against server CPU share; CPU microseconds per packet against packets per second; p99 added delay against packets per second. Runs: ${esc(names)}.</desc>`,
    `<defs>${panels.map((p) => p.defs).join('')}</defs>`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="8" y="28" font-size="18" font-weight="700" fill="${INK}">Relay benchmark: throughput, CPU cost and delay</text>`,
    ...panels.map((p) => p.svg),
    legend({ x: cellW, y: top + cellH, w: cellW, h: cellH }, runs),
    '</svg>',
    '',
  ].join('\n');
  fs.writeFileSync(outFile, svg);
}

main(process.argv.slice(2));
