// Fractal.ly explorer: the Mandelbrot set as a map of Julia sets, each pane a pannable, zoomable
// layer of XYZ tiles from GET /v1/tiles/{fractal}/{z}/{x}/{y}.png (scheme: fractally/jobs/xyz.py).
// "Render full size" submits the Julia view as a job (POST /v1/renders) and polls its progress.
// The whole state lives in the URL's hash, so a view can be shared and a reload restores it.
// Plain JavaScript, no framework, no build step.
"use strict";

(() => {
  // --- the XYZ scheme (fractally/jobs/xyz.py) --------------------------------------------------------

  const TILE = 256; // pixels per tile edge
  const EXTENT = 4; // tile 0/0/0 is 4 complex units wide ...
  const LEFT = -2; // ... from real -2 ...
  const TOP = 2; // ... and imaginary +2 downwards
  const MAX_LEVEL = 40; // deepest tile zoom
  const MIN_ZOOM = -1; // the view may zoom out to half a tile 0/0/0
  // The iteration rule of fractally/jobs/xyz.py (tests/test_browser.py checks that these match):
  const ITER_BASE = 200;
  const ITER_PER_ZOOM = 100;
  const ITER_CAP = 5000;
  const maxIterFor = (level) => Math.min(ITER_CAP, ITER_BASE + ITER_PER_ZOOM * level);

  const COORD_LIMIT = 2; // centres and c stay on the tile pyramid's square
  const CLICK_SLOP = 5; // pixels a pointer may move and still count as a click
  const URL_DELAY_MS = 250;
  const JULIA_DRAG_DELAY_MS = 180; // while the marker is dragged, redraw the Julia set this often
  const POLL_MS = 400;
  const MAX_RETRIES = 2;

  const $ = (id) => document.getElementById(id);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  /** A coordinate rounded to a hundredth of a pixel of resolution ``res`` (keeps URLs short). */
  function snap(value, res) {
    const digits = clamp(Math.ceil(-Math.log10(res)) + 2, 0, 100);
    return Number(value.toFixed(digits)) + 0; // + 0 turns -0 into 0
  }

  // --- a pannable, zoomable layer of <img> tiles ----------------------------------------------

  class TileLayer {
    /**
     * pane: the element to fill; fractal: "julia" | "mandelbrot"; home: () => the view to reset to.
     * onChange(layer) runs after every change of the view (pan, zoom, resize).
     */
    constructor(pane, fractal, home, onChange) {
      this.pane = pane;
      this.fractal = fractal;
      this.home = home;
      this.onChange = onChange;
      this.holder = pane.querySelector(".tiles");
      this.view = home();
      this.query = "";
      this.tiles = new Map(); // url -> {img, z, x, y, loaded, failed, retries}
      this.frame = 0;
      this.afterDraw = [];
    }

    size() {
      return [this.pane.clientWidth, this.pane.clientHeight];
    }

    /** Complex units per CSS pixel. */
    res() {
      return EXTENT / (TILE * 2 ** this.view.zoom);
    }

    /** The tile level drawn: the nearest to the view's zoom, sharper on high-density screens. */
    level() {
      const dpr = window.devicePixelRatio || 1;
      return clamp(Math.round(this.view.zoom + Math.log2(dpr)), 0, MAX_LEVEL);
    }

    toComplex(px, py) {
      const [w, h] = this.size();
      const r = this.res();
      return [this.view.x + (px - w / 2) * r, this.view.y - (py - h / 2) * r];
    }

    toScreen(re, im) {
      const [w, h] = this.size();
      const r = this.res();
      return [w / 2 + (re - this.view.x) / r, h / 2 - (im - this.view.y) / r];
    }

    setView(view) {
      const zoom = clamp(view.zoom, MIN_ZOOM, MAX_LEVEL);
      const res = EXTENT / (TILE * 2 ** zoom);
      this.view = {
        x: snap(clamp(view.x, -COORD_LIMIT, COORD_LIMIT), res),
        y: snap(clamp(view.y, -COORD_LIMIT, COORD_LIMIT), res),
        zoom: Number(zoom.toFixed(3)),
      };
      this.schedule();
      this.onChange(this);
    }

    panBy(dx, dy) {
      const r = this.res();
      this.setView({ x: this.view.x - dx * r, y: this.view.y + dy * r, zoom: this.view.zoom });
    }

    /** Zoom by ``dz`` levels keeping the point under (px, py) where it is. */
    zoomAround(px, py, dz) {
      const [re, im] = this.toComplex(px, py);
      const [w, h] = this.size();
      const zoom = clamp(this.view.zoom + dz, MIN_ZOOM, MAX_LEVEL);
      const r = EXTENT / (TILE * 2 ** zoom);
      this.setView({ x: re - (px - w / 2) * r, y: im + (py - h / 2) * r, zoom });
    }

    reset() {
      this.setView(this.home());
    }

    /** New tile URLs (c or colormap changed): old tiles stay as a backdrop until the new ones load. */
    setQuery(query) {
      if (query === this.query) return;
      this.query = query;
      this.schedule();
    }

    url(z, x, y) {
      return `v1/tiles/${this.fractal}/${z}/${x}/${y}.png${this.query ? "?" + this.query : ""}`;
    }

    schedule() {
      if (!this.frame) this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }

    draw() {
      const [w, h] = this.size();
      if (!w || !h) return;
      const z = this.level();
      const n = 2 ** z;
      const tw = EXTENT / n;
      const r = this.res();
      const left = this.view.x - (w / 2) * r;
      const top = this.view.y + (h / 2) * r;
      const x0 = Math.max(0, Math.floor((left - LEFT) / tw));
      const x1 = Math.min(n - 1, Math.floor((left + w * r - LEFT) / tw));
      const y0 = Math.max(0, Math.floor((TOP - top) / tw));
      const y1 = Math.min(n - 1, Math.floor((TOP - (top - h * r)) / tw));
      // The tiles of the view, nearest the centre first: they are requested first.
      const cx = (this.view.x - LEFT) / tw - 0.5;
      const cy = (TOP - this.view.y) / tw - 0.5;
      const needed = [];
      for (let ty = y0; ty <= y1; ty++) {
        for (let tx = x0; tx <= x1; tx++) needed.push([(tx - cx) ** 2 + (ty - cy) ** 2, tx, ty]);
      }
      needed.sort((a, b) => a[0] - b[0]);
      const wanted = new Set();
      for (const [, tx, ty] of needed) {
        const url = this.url(z, tx, ty);
        wanted.add(url);
        if (!this.tiles.has(url)) this.add(url, z, tx, ty);
      }
      // Tiles no longer wanted: unloaded ones go now (which cancels their request); loaded ones
      // stay under the new ones until all of those are in, unless they are levels away.
      const complete = [...wanted].every((u) => this.tiles.get(u).loaded || this.tiles.get(u).failed);
      for (const [url, t] of this.tiles) {
        if (wanted.has(url)) continue;
        if (!t.loaded || complete || Math.abs(t.z - z) > 3) this.remove(url);
      }
      for (const [url, t] of this.tiles) this.place(t, wanted.has(url), left, top, r);
      const pending = [...wanted].filter((u) => !this.tiles.get(u).loaded && !this.tiles.get(u).failed).length;
      this.pane.dataset.pending = String(pending);
      this.pane.dataset.level = String(z);
      this.pane.classList.toggle("busy", pending > 0);
      for (const fn of this.afterDraw) fn(this);
    }

    add(url, z, x, y) {
      const img = new Image(TILE, TILE);
      img.alt = "";
      img.draggable = false;
      img.decoding = "async";
      const t = { img, z, x, y, loaded: false, failed: false, retries: 0 };
      img.addEventListener("load", () => {
        t.loaded = true;
        t.failed = false;
        img.classList.remove("failed");
        img.classList.add("loaded");
        this.schedule(); // maybe the view is complete now: drop the backdrop
      });
      img.addEventListener("error", () => {
        if (!this.tiles.has(url)) return;
        if (t.retries < MAX_RETRIES) {
          t.retries += 1;
          setTimeout(() => { if (this.tiles.has(url)) img.src = url; }, 800 * t.retries);
          return;
        }
        t.failed = true;
        img.classList.add("failed");
        this.schedule();
      });
      img.src = url;
      this.tiles.set(url, t);
      this.holder.append(img);
    }

    remove(url) {
      const t = this.tiles.get(url);
      this.tiles.delete(url);
      t.img.removeAttribute("src");
      t.img.remove();
    }

    place(t, current, left, top, r) {
      const tw = EXTENT / 2 ** t.z;
      const px = (LEFT + t.x * tw - left) / r;
      const py = (top - (TOP - t.y * tw)) / r;
      const size = tw / r;
      // Round both edges, not the size, so neighbours meet without hairline gaps.
      const l = Math.round(px);
      const tp = Math.round(py);
      const s = t.img.style;
      s.left = `${l}px`;
      s.top = `${tp}px`;
      s.width = `${Math.round(px + size) - l}px`;
      s.height = `${Math.round(py + size) - tp}px`;
      s.zIndex = current ? "2" : "1";
    }
  }

  // --- pointer, wheel and keyboard gestures ---------------------------------------------------

  /** Drag to pan, wheel or pinch to zoom; ``onClick(px, py)`` for a press that did not move. */
  function attachGestures(layer, onClick) {
    const pane = layer.pane;
    const pointers = new Map(); // pointerId -> {x, y} (pane coordinates)
    let press = null; // {x, y, moved}

    const local = (e) => {
      const rect = pane.getBoundingClientRect();
      return { x: e.clientX - rect.left, y: e.clientY - rect.top };
    };

    const spread = () => {
      const [a, b] = [...pointers.values()];
      return { mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 }, dist: Math.hypot(a.x - b.x, a.y - b.y) };
    };

    pane.addEventListener("pointerdown", (e) => {
      if (e.pointerType === "mouse" && e.button !== 0) return;
      if (e.target.closest("button, .marker")) return;
      e.preventDefault();
      pane.focus({ preventScroll: true });
      pane.setPointerCapture(e.pointerId);
      const p = local(e);
      pointers.set(e.pointerId, p);
      if (pointers.size === 1) press = { x: p.x, y: p.y, moved: false };
      else if (press) press.moved = true; // a pinch is never a click
      pane.classList.add("dragging");
    });

    pane.addEventListener("pointermove", (e) => {
      const before = pointers.get(e.pointerId);
      if (!before) return;
      const p = local(e);
      if (pointers.size === 1) {
        // Nothing moves until the pointer leaves the click slop; then the view catches up at once.
        if (press && !press.moved && Math.hypot(p.x - press.x, p.y - press.y) <= CLICK_SLOP) return;
        if (press) press.moved = true;
        layer.panBy(p.x - before.x, p.y - before.y);
        pointers.set(e.pointerId, p);
      } else if (pointers.size === 2) {
        const old = spread();
        pointers.set(e.pointerId, p);
        const now = spread();
        if (old.dist > 0 && now.dist > 0) layer.zoomAround(old.mid.x, old.mid.y, Math.log2(now.dist / old.dist));
        layer.panBy(now.mid.x - old.mid.x, now.mid.y - old.mid.y);
      } else {
        pointers.set(e.pointerId, p);
      }
    });

    const release = (e) => {
      if (!pointers.delete(e.pointerId)) return;
      if (pointers.size > 0) return;
      pane.classList.remove("dragging");
      if (e.type === "pointerup" && press && !press.moved) onClick(press.x, press.y);
      press = null;
    };
    pane.addEventListener("pointerup", release);
    pane.addEventListener("pointercancel", release);

    pane.addEventListener("wheel", (e) => {
      e.preventDefault();
      const unit = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0025; // lines, pages, pixels
      const p = local(e);
      layer.zoomAround(p.x, p.y, clamp(-e.deltaY * unit, -1, 1));
    }, { passive: false });

    pane.addEventListener("keydown", (e) => {
      const [w, h] = layer.size();
      const step = 64;
      const keys = {
        ArrowLeft: () => layer.panBy(step, 0), ArrowRight: () => layer.panBy(-step, 0),
        ArrowUp: () => layer.panBy(0, step), ArrowDown: () => layer.panBy(0, -step),
        "+": () => layer.zoomAround(w / 2, h / 2, 1), "=": () => layer.zoomAround(w / 2, h / 2, 1),
        "-": () => layer.zoomAround(w / 2, h / 2, -1),
      };
      if (keys[e.key]) {
        e.preventDefault();
        keys[e.key]();
      }
    });

    for (const button of pane.querySelectorAll(".zoom button")) {
      button.addEventListener("click", () => {
        const dz = Number(button.dataset.zoom);
        const [w, h] = layer.size();
        if (dz === 0) layer.reset();
        else layer.zoomAround(w / 2, h / 2, dz);
      });
    }

    pane.addEventListener("pointerleave", () => pane.dispatchEvent(new CustomEvent("readout", { detail: null })));
    pane.addEventListener("pointermove", (e) => {
      const p = local(e);
      pane.dispatchEvent(new CustomEvent("readout", { detail: layer.toComplex(p.x, p.y) }));
    });
  }

  // --- the state, and the URL that holds it ---------------------------------------------------

  // #c=re,im&m=x,y,zoom&j=x,y,zoom&colormap=name  (m: the Mandelbrot pane, j: the Julia pane)
  const DEFAULT_C = [-0.8, 0.156];
  const COLORMAPS = [...$("colormap").options].map((o) => o.value);
  const state = { c: DEFAULT_C.slice(), colormap: COLORMAPS[0] };

  /** The view that fits ``box`` ([re0, re1, im0, im1]) into the pane. */
  function fit(pane, box) {
    const w = pane.clientWidth || 512;
    const h = pane.clientHeight || 512;
    const units = Math.max((box[1] - box[0]) / w, (box[3] - box[2]) / h);
    const zoom = Math.log2(EXTENT / (TILE * units));
    return { x: (box[0] + box[1]) / 2, y: (box[2] + box[3]) / 2, zoom: Number(zoom.toFixed(2)) };
  }

  function numbers(text, count) {
    if (typeof text !== "string") return null;
    const parts = text.split(",");
    if (parts.length !== count || parts.some((p) => p.trim() === "")) return null;
    const values = parts.map(Number);
    return values.every(Number.isFinite) ? values : null;
  }

  function readUrl() {
    const params = new URLSearchParams(location.hash.slice(1));
    const c = numbers(params.get("c"), 2);
    const m = numbers(params.get("m"), 3);
    const j = numbers(params.get("j"), 3);
    const colormap = params.get("colormap");
    return {
      c: c && c.map((v) => clamp(v, -COORD_LIMIT, COORD_LIMIT)),
      m: m && { x: m[0], y: m[1], zoom: m[2] },
      j: j && { x: j[0], y: j[1], zoom: j[2] },
      colormap: COLORMAPS.includes(colormap) ? colormap : null,
    };
  }

  let lastHash = "";
  let urlTimer = 0;

  function hashOf() {
    const v = (view) => `${view.x},${view.y},${view.zoom}`;
    return `#c=${state.c[0]},${state.c[1]}&m=${v(mandelbrot.view)}&j=${v(julia.view)}&colormap=${state.colormap}`;
  }

  function writeUrl(now = false) {
    clearTimeout(urlTimer);
    const write = () => {
      lastHash = hashOf();
      if (location.hash !== lastHash) history.replaceState(null, "", lastHash);
    };
    if (now) write();
    else urlTimer = setTimeout(write, URL_DELAY_MS);
  }

  // --- the two panes --------------------------------------------------------------------------

  const MANDELBROT_HOME = [-2, 0.7, -1.25, 1.25]; // [re0, re1, im0, im1]
  const JULIA_HOME = [-1.8, 1.8, -1.15, 1.15];

  const onViewChange = () => writeUrl();
  const mandelbrot = new TileLayer($("mandelbrot"), "mandelbrot", () => fit($("mandelbrot"), MANDELBROT_HOME),
    onViewChange);
  const julia = new TileLayer($("julia"), "julia", () => fit($("julia"), JULIA_HOME), onViewChange);

  function showC() {
    const [re, im] = state.c;
    $("c-value").textContent = `${re.toFixed(4)} ${im < 0 ? "−" : "+"} ${Math.abs(im).toFixed(4)}i`;
    $("c-value").title = `${re}, ${im}`;
    placeMarker();
  }

  function placeMarker() {
    const [px, py] = mandelbrot.toScreen(state.c[0], state.c[1]);
    const marker = $("marker");
    marker.style.left = `${px}px`;
    marker.style.top = `${py}px`;
    marker.hidden = !(px > -20 && py > -20 && px < mandelbrot.size()[0] + 20 && py < mandelbrot.size()[1] + 20);
  }

  function tileQueries() {
    mandelbrot.setQuery(`colormap=${state.colormap}`);
    julia.setQuery(`c=${state.c[0]},${state.c[1]}&colormap=${state.colormap}`);
  }

  function setC(c) {
    state.c = [clamp(c[0], -COORD_LIMIT, COORD_LIMIT), clamp(c[1], -COORD_LIMIT, COORD_LIMIT)];
    showC();
    tileQueries();
    writeUrl();
  }

  /** c from a point of the Mandelbrot pane, rounded to a hundredth of its pixels. */
  function cAt(px, py) {
    const [re, im] = mandelbrot.toComplex(px, py);
    const r = mandelbrot.res();
    return [snap(re, r), snap(im, r)];
  }

  mandelbrot.afterDraw.push(placeMarker);
  attachGestures(mandelbrot, (px, py) => setC(cAt(px, py)));
  attachGestures(julia, () => {});

  // Each pane says its tile level, the iterations that level uses, and the point under the pointer.
  for (const [layer, id] of [[mandelbrot, "mandelbrot-readout"], [julia, "julia-readout"]]) {
    let cursor = null;
    const show = () => {
      const level = layer.level();
      const digits = clamp(Math.ceil(-Math.log10(layer.res())), 2, 16);
      const where = cursor ? ` · ${cursor[0].toFixed(digits)}, ${cursor[1].toFixed(digits)}i` : "";
      $(id).textContent = `zoom ${level} · ${maxIterFor(level)} iterations${where}`;
    };
    layer.pane.addEventListener("readout", (e) => {
      cursor = e.detail;
      show();
    });
    layer.afterDraw.push(show);
  }

  // Dragging the marker moves c continuously; the Julia pane follows a few times a second.
  (() => {
    const marker = $("marker");
    let dragging = null;
    let timer = 0;
    marker.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      e.stopPropagation();
      marker.setPointerCapture(e.pointerId);
      dragging = e.pointerId;
      $("mandelbrot").classList.add("dragging");
    });
    marker.addEventListener("pointermove", (e) => {
      if (e.pointerId !== dragging) return;
      const rect = mandelbrot.pane.getBoundingClientRect();
      state.c = cAt(e.clientX - rect.left, e.clientY - rect.top);
      showC();
      if (!timer) timer = setTimeout(() => { timer = 0; tileQueries(); }, JULIA_DRAG_DELAY_MS);
    });
    const end = (e) => {
      if (e.pointerId !== dragging) return;
      dragging = null;
      clearTimeout(timer);
      timer = 0;
      $("mandelbrot").classList.remove("dragging");
      setC(state.c);
    };
    marker.addEventListener("pointerup", end);
    marker.addEventListener("pointercancel", end);
  })();

  $("colormap").addEventListener("change", () => {
    state.colormap = $("colormap").value;
    tileQueries();
    writeUrl();
  });

  /** Apply the URL's state (on load, and when someone pastes a link into the address bar). */
  function applyUrl() {
    const given = readUrl();
    state.c = given.c || DEFAULT_C.slice();
    state.colormap = given.colormap || COLORMAPS[0];
    $("colormap").value = state.colormap;
    mandelbrot.setView(given.m || mandelbrot.home());
    julia.setView(given.j || julia.home());
    showC();
    tileQueries();
    writeUrl(true);
  }

  window.addEventListener("hashchange", () => {
    if (location.hash !== lastHash) applyUrl();
  });

  const redraw = () => {
    mandelbrot.schedule();
    julia.schedule();
  };
  if (window.ResizeObserver) {
    const observer = new ResizeObserver(redraw);
    observer.observe(mandelbrot.pane);
    observer.observe(julia.pane);
  } else {
    window.addEventListener("resize", redraw);
  }

  // --- "Render full size": the Julia view as a job -------------------------------------------

  let jobGeneration = 0;

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) { /* not JSON */ }
    return `the server answered ${response.status}`;
  }

  /** The spec of the Julia pane's view at W×H: the same centre, everything visible included. */
  function fullSpec(width, height) {
    const [w, h] = julia.size();
    const r = julia.res();
    return {
      fractal: "julia",
      c: state.c.slice(),
      center: [julia.view.x, julia.view.y],
      scale: Math.max(w * r, (h * r * width) / height),
      width,
      height,
      max_iter: maxIterFor(julia.level()), // the tiles' rule, so the colours match what is shown
      colormap: state.colormap,
      format: "png",
    };
  }

  function showJob(body) {
    const { tiles_done: done, tiles_total: total } = body.progress;
    const fraction = body.status === "done" ? 1 : total ? done / total : 0;
    $("job").hidden = false;
    $("job-status").textContent = body.status;
    $("job-progress").value = fraction;
    $("job-percent").textContent = `${Math.floor(fraction * 100)} %`;
    $("job-tiles").textContent = `${done} / ${total} tiles`;
  }

  function showResult(body) {
    const link = $("job-result");
    // The api's own result route (a redirect to the store's URL, or the bytes): relative like every URL
    // here, so the page works under a gateway's path prefix whatever the api thinks its address is.
    const url = `v1/renders/${body.id}/result`;
    link.href = url;
    $("job-thumb").src = url;
    $("job-result-text").textContent = `Open the ${body.spec.width} × ${body.spec.height} image`;
    link.hidden = false;
  }

  async function follow(url, generation) {
    while (generation === jobGeneration) {
      let body;
      try {
        const response = await fetch(url, { cache: "no-store" });
        if (!response.ok) throw new Error(await errorOf(response));
        body = await response.json();
      } catch (err) {
        if (generation === jobGeneration) $("job-error").textContent = err.message || "lost contact with the server";
        break;
      }
      if (generation !== jobGeneration) return;
      showJob(body);
      if (body.status === "done") {
        showResult(body);
        break;
      }
      if (body.status === "failed") {
        $("job-error").textContent = (body.error && body.error.message) || "the render failed";
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (generation === jobGeneration) $("render-full").disabled = false;
  }

  $("render-full").addEventListener("click", async () => {
    const generation = ++jobGeneration;
    const [width, height] = $("size").value.split("x").map(Number);
    $("render-full").disabled = true;
    $("job-error").textContent = "";
    $("job-result").hidden = true;
    $("job").hidden = true;
    try {
      const response = await fetch("v1/renders", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(fullSpec(width, height)),
      });
      if (!response.ok) throw new Error(await errorOf(response));
      const body = await response.json();
      showJob(body);
      if (body.status === "done") {
        showResult(body);
        $("render-full").disabled = false;
        return;
      }
      follow(`v1/renders/${body.id}`, generation);
    } catch (err) {
      $("job-error").textContent = err.message || "the server could not be reached";
      $("render-full").disabled = false;
    }
  });

  applyUrl();
})();
