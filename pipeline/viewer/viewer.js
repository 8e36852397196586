// The results viewer's script (inlined into index.html by pipeline.viewer.build); plain DOM, no
// library. It reads the JSON in #viewer-data: classes, test videos with their ground truth
// [start, end, class], each run's detections [start, end, class, score] by video and metrics,
// the segment stage's per-second labels and predictions, the spatial heatmap figures.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const $ = (id) => document.getElementById(id);
  const player = $("video-player");
  const runNames = Object.keys(data.runs);
  const scores = (run) => Object.values(run ? data.runs[run].detections : {}).flat().map((d) => d[3]);
  const maxScore = runNames.flatMap(scores).reduce((a, b) => Math.max(a, b), 1e-6);
  const state = {
    runA: runNames[0] || "", runB: "", video: 0, threshold: Number($("score").value),
    tiou: 0.5, classes: new Set(data.classes.map((_, k) => k)), time: 0,
  };

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attributes, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // A distinct hue per class (golden-angle steps), the same in every panel.
  const colour = (k) => `hsl(${(k * 137.508) % 360}, 62%, 45%)`;
  const percent = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1));
  const video = () => data.videos[state.video];
  const shownRuns = () => [state.runA, state.runB].filter((name, i) => name && (i === 0 || name !== state.runA));

  function tiou(a, b) {
    const inter = Math.max(0, Math.min(a[1], b[1]) - Math.max(a[0], b[0]));
    const union = (a[1] - a[0]) + (b[1] - b[0]) - inter;
    return inter / Math.max(union, 1e-8);
  }
  // Greedy matching as the ActivityNet evaluator does: detections by descending score, each
  // to the unmatched event of its class it overlaps most, if by at least state.tiou.
  function match(events, detections) {
    const found = events.map(() => false);
    const hits = detections.map((d) => {
      let best = -1, bestIou = state.tiou;
      events.forEach((e, i) => {
        if (found[i] || e[2] !== d[2]) return;
        const iou = tiou(e, d);
        if (iou >= bestIou) { best = i; bestIou = iou; }
      });
      if (best >= 0) found[best] = true;
      return best >= 0;
    });
    return { found, hits };
  }
  function drawnDetections(run) {
    const all = (data.runs[run].detections[video().id] || []);
    return all.filter((d) => d[3] >= state.threshold && state.classes.has(d[2]));
  }

  function seek(time) {
    state.time = Math.max(0, time);
    if (player.getAttribute("src")) player.currentTime = state.time;
    moveCursors();
  }
  function moveCursors() {
    const v = video();
    if (!v) return;
    const time = player.getAttribute("src") && !player.error ? player.currentTime : state.time;
    const fraction = Math.min(1, time / Math.max(v.duration, 1e-6));
    for (const cursor of document.querySelectorAll(".cursor")) {
      cursor.style.left = `calc(var(--label-width) + (100% - var(--label-width)) * ${fraction})`;
    }
    $("clock").textContent = `${time.toFixed(2)} s of ${v.duration.toFixed(2)} s`;
  }
  function place(node, start, end, duration) {
    node.style.left = `${(100 * Math.max(0, start)) / duration}%`;
    node.style.width = `${(100 * Math.max(0, Math.min(end, duration) - start)) / duration}%`;
  }
  function lane(label, labelColour, duration) {
    const row = element("div", { class: "lane" });
    const name = element("span", { class: "lane-label", title: label });
    if (labelColour) name.append(element("span", { class: "swatch", style: `background:${labelColour}` }));
    name.append(label);
    const track = element("div", { class: "track" });
    track.addEventListener("click", (event) => {
      const box = track.getBoundingClientRect();
      seek(((event.clientX - box.left) / box.width) * duration);
    });
    row.append(name, track);
    return { row, track };
  }
  function eventBar(className, start, end, duration, title, style) {
    const bar = element("div", { class: `event ${className}`, title, "data-start": start, "data-end": end });
    place(bar, start, end, duration);
    if (style) bar.style.cssText += style;
    bar.addEventListener("click", (event) => { event.stopPropagation(); seek(start); });
    return bar;
  }
  function axis(duration) {
    const ticks = element("div", { class: "axis" });
    const step = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600].find((s) => duration / s <= 12) || 1200;
    for (let t = 0; t <= duration + 1e-9; t += step) {
      const tick = element("span", {}, `${t}s`);
      tick.style.left = `${(100 * t) / duration}%`;
      ticks.append(tick);
    }
    return ticks;
  }

  function timeline(run, lanes) {
    const v = video();
    const events = v.events.filter((e) => state.classes.has(e[2]));
    const detections = drawnDetections(run);
    const { found, hits } = match(events, detections);
    const box = element("div", { class: "timeline", "data-run": run, "data-drawn": detections.length });
    const metrics = data.runs[run].metrics;
    box.append(element("h3", {}, `${run}: ${detections.length} detections drawn, ` +
      `${found.filter(Boolean).length} of ${events.length} events found; ` +
      `average mAP ${percent(metrics.average_mAP)} %`));
    box.append(axis(v.duration));
    const body = element("div", { class: "lanes" });
    for (const k of lanes) {
      const { row, track } = lane(data.classes[k], colour(k), v.duration);
      events.forEach((e, i) => {
        if (e[2] !== k) return;
        const name = `${data.classes[k]} ${e[0]}-${e[1]} s: ${found[i] ? "found" : "missed"}`;
        track.append(eventBar(`gt ${found[i] ? "found" : "missed"}`, e[0], e[1], v.duration, name));
      });
      detections.forEach((d, i) => {
        if (d[2] !== k) return;
        const name = `${data.classes[k]} ${d[0]}-${d[1]} s, score ${d[3]}`;
        track.append(eventBar(`det ${hits[i] ? "tp" : "fp"}`, d[0], d[1], v.duration, name,
          `opacity:${0.3 + (0.7 * d[3]) / maxScore}`));
      });
      body.append(row);
    }
    if (!lanes.length) body.append(element("p", { class: "empty" }, "No event or detection of the chosen classes."));
    body.append(element("div", { class: "cursor" }));
    box.append(body);
    return box;
  }
  function drawTimelines() {
    const v = video();
    const runs = shownRuns();
    const used = new Set(v.events.map((e) => e[2]));
    for (const run of runs) for (const d of drawnDetections(run)) used.add(d[2]);
    const lanes = [...used].filter((k) => state.classes.has(k)).sort((a, b) => a - b);
    const boxes = runs.map((run) => timeline(run, lanes));
    $("timelines").replaceChildren(...boxes);
    const counts = boxes.map((b) => `${b.dataset.run}: ${b.dataset.drawn}`);
    $("count").textContent = `detections drawn: ${counts.join(", ")}`;
    drawSegments();
    moveCursors();
  }

  function drawSegments() {
    const segments = data.segments;
    $("segments-panel").hidden = !segments;
    if (!segments) return;
    const v = video();
    const labels = segments.labels[v.id];
    const panel = $("segments");
    if (!labels) {
      panel.replaceChildren(element("p", { class: "empty" }, "No 1-second labels for this video."));
      return;
    }
    const classIndex = new Map(data.classes.map((name, k) => [name, k]));
    const box = element("div", { class: "timeline segments" });
    box.append(axis(v.duration));
    const body = element("div", { class: "lanes" });
    const rows = [["labels", labels, null]];
    for (const [name, run] of Object.entries(segments.runs)) {
      rows.push([`${name} (${percent(run.accuracy)} %)`, run.predicted[v.id] || [], labels]);
    }
    for (const [name, ids, truth] of rows) {
      const { row, track } = lane(name, null, v.duration);
      row.classList.add("segment-row");
      ids.forEach((id, second) => {
        const label = segments.classes[id];
        const k = classIndex.get(label);
        const wrong = truth && truth[second] !== id;
        const cell = element("div", { class: `cell${k === undefined ? " background" : ""}${wrong ? " wrong" : ""}`,
          title: `${second}-${second + 1} s: ${label}${wrong ? ` (label: ${segments.classes[truth[second]]})` : ""}` });
        place(cell, second, second + 1, v.duration);
        if (k !== undefined) cell.style.background = colour(k);
        cell.addEventListener("click", (event) => { event.stopPropagation(); seek(second); });
        track.append(cell);
      });
      body.append(row);
    }
    body.append(element("div", { class: "cursor" }));
    box.append(body);
    panel.replaceChildren(box);
  }

  function drawMetrics() {
    const runs = shownRuns();
    const table = $("ap-table");
    const head = element("tr");
    head.append(element("th", {}, "AP (%), mean over tIoU"), ...runs.map((r) => element("th", {}, r)));
    const rows = [head];
    const average = element("tr");
    average.append(element("td", {}, "mAP"), ...runs.map((r) => element("td", {}, percent(data.runs[r].metrics.average_mAP))));
    rows.push(average);
    data.classes.forEach((name, k) => {
      const row = element("tr");
      const cell = element("td");
      cell.append(element("span", { class: "swatch", style: `background:${colour(k)}` }), name);
      row.append(cell, ...runs.map((r) => element("td", {}, percent(data.runs[r].metrics.ap_per_class[k]))));
      rows.push(row);
    });
    table.replaceChildren(...rows);

    const chart = $("map-chart");
    const [left, right, top, bottom] = [45, 410, 15, 225];
    const all = runs.flatMap((r) => data.runs[r].metrics.tiou);
    const [xMin, xMax] = [Math.min(...all, 0.1), Math.max(...all, 0.9)];
    const yMax = Math.max(0.1, Math.ceil(10 * Math.max(...runs.flatMap((r) => data.runs[r].metrics.mAP), 0)) / 10);
    const x = (t) => left + ((t - xMin) / Math.max(xMax - xMin, 1e-6)) * (right - left);
    const y = (m) => bottom - (m / yMax) * (bottom - top);
    const nodes = [];
    for (let i = 0; i <= 5; i++) {
      const m = (yMax * i) / 5;
      nodes.push(svg("line", { class: "grid", x1: left, x2: right, y1: y(m), y2: y(m) }),
        svg("text", { x: left - 5, y: y(m) + 4, "text-anchor": "end" }, (100 * m).toFixed(0)));
    }
    for (const t of data.runs[runs[0]] ? data.runs[runs[0]].metrics.tiou : []) {
      nodes.push(svg("text", { x: x(t), y: bottom + 15, "text-anchor": "middle" }, t));
    }
    nodes.push(svg("line", { class: "axis-line", x1: left, x2: right, y1: bottom, y2: bottom }),
      svg("text", { x: (left + right) / 2, y: bottom + 32, "text-anchor": "middle" }, "tIoU threshold"));
    runs.forEach((r, i) => {
      const m = data.runs[r].metrics;
      const stroke = ["#06c", "#d60"][i];
      const points = m.tiou.map((t, j) => `${x(t)},${y(m.mAP[j])}`).join(" ");
      nodes.push(svg("polyline", { points, fill: "none", stroke, "stroke-width": 2, class: "curve", "data-run": r }));
      m.tiou.forEach((t, j) => nodes.push(svg("circle", { cx: x(t), cy: y(m.mAP[j]), r: 3, fill: stroke },
      )));
      nodes.push(svg("text", { x: right - 5, y: top + 12 + 14 * i, "text-anchor": "end", fill: stroke }, r));
    });
    chart.replaceChildren(...nodes);
  }

  function loadVideo() {
    const v = video();
    const message = $("video-message");
    message.hidden = true;
    state.time = 0;
    if (v.src) {
      player.hidden = false;
      player.src = v.src;
    } else {
      player.removeAttribute("src");
      player.load();
      player.hidden = true;
      message.hidden = false;
      message.textContent = "No video file for this data set (features only): the timeline seeks on its own.";
    }
    drawTimelines();
  }
  player.addEventListener("error", () => {
    const message = $("video-message");
    message.hidden = false;
    message.textContent = `This browser cannot play ${player.getAttribute("src")} (its format or codec); open it in a video player.`;
  });
  for (const type of ["timeupdate", "seeked", "loadedmetadata"]) player.addEventListener(type, moveCursors);
  function followPlayback() {
    if (!player.paused) moveCursors();
    requestAnimationFrame(followPlayback);
  }

  function setUp() {
    for (const name of runNames) {
      $("run-a").append(element("option", { value: name }, name));
      $("run-b").append(element("option", { value: name }, name));
    }
    data.videos.forEach((v, i) => $("video").append(element("option", { value: i }, `${v.id} (${v.events.length} events)`)));
    const thresholds = runNames.length ? data.runs[runNames[0]].metrics.tiou : [0.5];
    state.tiou = thresholds.includes(0.5) ? 0.5 : thresholds[0];
    for (const t of thresholds) $("tiou").append(element("option", { value: t }, t));
    $("tiou").value = state.tiou;
    data.classes.forEach((name, k) => {
      const box = element("input", { type: "checkbox", value: k, checked: "" });
      box.addEventListener("change", () => { box.checked ? state.classes.add(k) : state.classes.delete(k); drawTimelines(); });
      const label = element("label", {});
      label.append(box, element("span", { class: "swatch", style: `background:${colour(k)}` }), name);
      $("class-list").append(label);
    });
    const everyClass = (on) => {
      for (const box of $("class-list").querySelectorAll("input")) box.checked = on;
      state.classes = new Set(on ? data.classes.map((_, k) => k) : []);
      drawTimelines();
    };
    $("classes-all").addEventListener("click", () => everyClass(true));
    $("classes-none").addEventListener("click", () => everyClass(false));
    $("run-a").addEventListener("change", (e) => { state.runA = e.target.value; drawTimelines(); drawMetrics(); });
    $("run-b").addEventListener("change", (e) => { state.runB = e.target.value; drawTimelines(); drawMetrics(); });
    $("video").addEventListener("change", (e) => { state.video = Number(e.target.value); loadVideo(); });
    $("tiou").addEventListener("change", (e) => { state.tiou = Number(e.target.value); drawTimelines(); });
    // The slider spans the scores present; it starts where the first run shows about three
    // detections per ground-truth event over the test split (as the evaluator's timeline plots).
    const ranked = scores(state.runA).sort((a, b) => b - a);
    const numEvents = data.videos.reduce((n, v) => n + v.events.length, 0);
    $("score").max = maxScore;
    $("score").value = ranked.length ? ranked[Math.max(1, Math.min(3 * numEvents, ranked.length)) - 1] : 0;
    const setThreshold = () => {
      state.threshold = Number($("score").value);
      $("score-value").textContent = state.threshold.toFixed(3);
    };
    setThreshold();
    $("score").addEventListener("input", () => { setThreshold(); drawTimelines(); });
    $("spatial-panel").hidden = !data.heatmaps.length;
    for (const figure of data.heatmaps) {
      const node = element("figure");
      node.append(element("img", { src: figure.src, alt: `heatmaps, ${figure.caption}` }),
        element("figcaption", {}, figure.caption));
      $("heatmaps").append(node);
    }
    if (!data.videos.length || !runNames.length) {
      $("timelines").append(element("p", { class: "empty" }, "No test video or no run to show."));
      return;
    }
    drawMetrics();
    loadVideo();
    requestAnimationFrame(followPlayback);
  }
  setUp();
  document.body.dataset.ready = "true";
})();
