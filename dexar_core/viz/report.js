// The dexar report: draws a selected unit's map over the greyed image, in the browser.
// Everything it needs is in #dexar-data; it requests nothing.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("dexar-data").textContent);
  const state = { token: -1, pinned: -1, raw: false, alpha: data.alpha, grid: 0 };
  const byId = (id) => document.getElementById(id);
  const canvas = byId("map");
  const context = canvas.getContext("2d");
  const backdrop = new Image();
  const maxWeight = Math.max(0, ...data.weights);

  function label(index) {
    return index < 0 ? data.units.whole : data.units.one + " " + JSON.stringify(data.tokens[index]);
  }

  function span(rows) {
    let low = Infinity, high = -Infinity;
    for (const row of rows.flat(2)) { low = Math.min(low, row); high = Math.max(high, row); }
    return high > low ? [low, high] : [low, low + 1];
  }

  // The map shown now and the values its colour table ends stand for.
  function currentMap() {
    const grid = data.grids[state.grid];
    if (state.raw) {
      if (state.token < 0) return { map: grid.rawSequence, range: span([grid.rawSequence]) };
      return { map: grid.rawTokenMaps[state.token], range: span(grid.rawTokenMaps) };
    }
    return { map: state.token < 0 ? grid.sequence : grid.tokenMaps[state.token], range: [0, 1] };
  }

  function colour(value, range) {
    const unit = Math.min(1, Math.max(0, (value - range[0]) / (range[1] - range[0])));
    return data.lut[Math.round(unit * 255)];
  }

  function draw() {
    const grid = data.grids[state.grid];
    const shown = currentMap();
    const rows = shown.map.length, columns = shown.map[0].length;
    const cells = document.createElement("canvas");
    cells.width = columns;
    cells.height = rows;
    const cellContext = cells.getContext("2d");
    const pixels = cellContext.createImageData(columns, rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        const rgb = colour(shown.map[r][c], shown.range);
        const at = 4 * (r * columns + c);
        pixels.data.set([rgb[0], rgb[1], rgb[2], 255], at);
      }
    }
    cellContext.putImageData(pixels, 0, 0);
    context.imageSmoothingEnabled = false;
    context.globalAlpha = 1;
    context.drawImage(backdrop, 0, 0, grid.width, grid.height);
    // The token grid is smoothed (bilinear) over the box the model saw.
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.globalAlpha = state.alpha;
    const [left, top, right, bottom] = grid.box;
    context.drawImage(cells, left, top, right - left, bottom - top);
    context.globalAlpha = 1;
    canvas.dataset.token = String(state.token);
    canvas.dataset.mode = state.raw ? "raw" : "normalised";
    canvas.dataset.alpha = String(state.alpha);
    const position = state.token < 0 ? "" : " (" + (state.token + 1) + " of " + data.tokens.length + ")";
    byId("shown").textContent = label(state.token) + position + ", " + canvas.dataset.mode;
    byId("bar-low").textContent = shown.range[0].toPrecision(3);
    byId("bar-high").textContent = shown.range[1].toPrecision(3);
    byId("bar-label").textContent = state.raw ? "relevance (raw)" : "relevance (normalised)";
    for (const chip of document.querySelectorAll(".chip")) {
      chip.classList.toggle("selected", Number(chip.dataset.token) === state.token);
    }
    drawHeads();
  }

  function show(index) { state.token = index; draw(); }

  function chip(index) {
    const element = document.createElement("span");
    element.className = "chip";
    element.dataset.token = String(index);
    element.setAttribute("role", "option");
    if (index < 0) {
      element.classList.add("sequence");
      element.textContent = data.units.whole;
    } else {
      const weight = data.weights[index];
      const share = maxWeight > 0 ? weight / maxWeight : 0;
      element.style.background = "rgba(28, 95, 191, " + (0.08 + 0.55 * share).toFixed(3) + ")";
      element.append(document.createTextNode(data.tokens[index].trim() ? data.tokens[index] : JSON.stringify(data.tokens[index])));
      const number = document.createElement("span");
      number.className = "weight";
      number.textContent = weight === 0 ? "0" : weight.toPrecision(3);
      element.append(number);
      element.title = data.weightName + " " + weight;
      if (weight === 0) {
        element.classList.add("zero");
        element.title += ": weight 0, not in the " + data.units.whole;
      }
    }
    element.addEventListener("mouseenter", () => show(index));
    element.addEventListener("mouseleave", () => show(state.pinned));
    element.addEventListener("click", () => { state.pinned = index; show(index); });
    return element;
  }

  function drawHeads() {
    const heads = byId("heads");
    heads.textContent = "";
    const weights = data.headWeights;
    if (!weights.length || !weights[0].length || !weights[0][0].length) {
      byId("heads-heading").textContent = "head weights";
      heads.textContent = "This method does not weigh attention heads.";
      return;
    }
    let grid;
    if (state.token >= 0) {
      grid = weights[state.token];
      byId("heads-heading").textContent = "head weights of " + label(state.token) + " (layers x heads)";
    } else {
      grid = weights[0].map((row, l) => row.map((_, h) => weights.reduce((sum, t) => sum + t[l][h], 0) / weights.length));
      byId("heads-heading").textContent = "head weights, mean over the " + data.units.many + " (layers x heads)";
    }
    const range = span([grid]);
    const table = document.createElement("table");
    const header = table.insertRow();
    header.insertCell().outerHTML = "<th>layer</th>";
    grid[0].forEach((_, h) => { header.insertCell().outerHTML = "<th>" + h + "</th>"; });
    grid.forEach((row, l) => {
      const line = table.insertRow();
      line.insertCell().outerHTML = "<th>" + (data.layers[l] ?? l) + "</th>";
      row.forEach((value, h) => {
        const cell = line.insertCell();
        const rgb = colour(value, range);
        cell.style.background = "rgb(" + rgb.join(",") + ")";
        cell.title = "layer " + (data.layers[l] ?? l) + ", head " + h + ": " + value;
      });
    });
    heads.append(table);
  }

  function start() {
    byId("title").textContent = data.title.join("\n");
    const notes = byId("notes");
    if (data.fallback) {
      const warning = document.createElement("span");
      warning.className = "fallback";
      warning.textContent = data.fallback + " ";
      notes.append(warning);
    }
    notes.append(document.createTextNode(data.weightMeaning));
    byId("chips-heading").textContent = data.units.many + " (coloured by " + data.weightName + ")";
    const chips = byId("chips");
    chips.append(chip(-1));
    data.tokens.forEach((_, index) => chips.append(chip(index)));
    const slider = byId("opacity");
    slider.value = String(data.alpha);
    slider.addEventListener("input", () => { state.alpha = Number(slider.value); draw(); });
    const raw = byId("raw");
    raw.disabled = !("rawSequence" in data.grids[0]);
    raw.addEventListener("change", () => { state.raw = raw.checked; draw(); });
    if (data.grids.length > 1) {
      const select = byId("grid");
      data.grids.forEach((grid, index) => select.add(new Option(grid.name, String(index))));
      select.addEventListener("change", () => { state.grid = Number(select.value); load(); });
      byId("grid-choice").hidden = false;
    }
    const bar = byId("colour-bar").getContext("2d");
    for (let y = 0; y < 300; y++) {
      const rgb = data.lut[Math.round(255 * (1 - y / 299))];
      bar.fillStyle = "rgb(" + rgb.join(",") + ")";
      bar.fillRect(0, y, 24, 1);
    }
    const facts = byId("facts");
    for (const [name, value] of Object.entries(data.facts)) {
      const row = facts.insertRow();
      row.insertCell().textContent = name;
      row.insertCell().textContent = value;
    }
    load();
  }

  function load() {
    const grid = data.grids[state.grid];
    canvas.width = grid.width;
    canvas.height = grid.height;
    byId("original").src = grid.original;
    byId("original").width = grid.width;
    byId("unseen-legend").hidden = !grid.unseen;
    backdrop.onload = () => { document.body.dataset.ready = "true"; draw(); };
    backdrop.src = grid.backdrop;
  }

  start();
})();
