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
  const MAX_LEVEL = 40; // deepest tile zoom in float64; deeper tiles are deep views (perturbation)
  const MAX_DEEP_LEVEL = 1000; // deepest tile zoom of all
  const MIN_ZOOM = -1; // the view may zoom out to half a tile 0/0/0
  // The iteration rule of fractally/jobs/xyz.py (tests/test_browser.py checks that these match):
  const ITER_BASE = 200;
  const ITER_PER_ZOOM = 100;
  const ITER_CAP = 5000;
  const DEEP_ITER_CAP = 30000;
  const maxIterFor = (level) => Math.min(level <= MAX_LEVEL ? ITER_CAP : DEEP_ITER_CAP, ITER_BASE + ITER_PER_ZOOM * level);

  const CLICK_SLOP = 5; // pixels a pointer may move and still count as a click
  const URL_DELAY_MS = 250;
  const JULIA_DRAG_DELAY_MS = 180; // while the marker is dragged, redraw the Julia set this often
  const POLL_MS = 400;
  const MAX_RETRIES = 2;

  const $ = (id) => document.getElementById(id);
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

  // --- exact coordinates ----------------------------------------------------------------------
  // Past zoom 45 or so a float64 can no longer say where the view is, so centres and c are exact:
  // a BigInt n stands for n / 2^FRAC_BITS, finer than a hundredth of a pixel at the deepest zoom
  // (a pixel there is 2^-1014 wide). Only offsets within the view, a few thousand pixels at most,
  // are floats; tile indices are BigInts, and the URL holds decimal digits enough for the zoom.

  const FRAC_BITS = 1100;
  const ONE = 1n << BigInt(FRAC_BITS);

  /** Shift left by k bits (right, flooring, for k < 0). */
  const shift = (n, k) => (k >= 0 ? n << BigInt(k) : n >> BigInt(-k));

  /** The exact value of a float. */
  function exactOf(v) {
    if (v === 0 || !Number.isFinite(v)) return 0n;
    const e = Math.max(-1074, Math.floor(Math.log2(Math.abs(v))) - 52);
    return shift(BigInt(Math.round(v / 2 ** e)), FRAC_BITS + e);
  }

  /** The nearest float to an exact value (for offsets and display). */
  function floatOf(n) {
    if (n === 0n) return 0;
    const a = n < 0n ? -n : n;
    const s = Math.max(0, a.toString(2).length - 64);
    const v = Number(a >> BigInt(s)) * 2 ** (s - 600) * 2 ** (600 - FRAC_BITS); // two steps: no subnormal on the way
    return n < 0n ? -v : v;
  }

  const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?$/;

  /** The exact value nearest a decimal string such as "-0.7436438870371587", "4e-17"; null if it is not one. */
  function exactOfDecimal(text) {
    const m = DECIMAL.exec(String(text).trim());
    if (!m || !(m[2] || m[3])) return null;
    const digits = (m[2] || "") + (m[3] || "");
    const exp10 = Number(m[4] || 0) - (m[3] || "").length;
    if (digits.length > 1200 || Math.abs(exp10) > 1300) return null;
    let n = BigInt(digits || "0") * ONE;
    if (exp10 >= 0) n *= 10n ** BigInt(exp10);
    else {
      const d = 10n ** BigInt(-exp10);
      n = (2n * n + d) / (2n * d); // rounded to nearest
    }
    return m[1] === "-" ? -n : n;
  }

  /** An exact value as a decimal with ``places`` digits after the point, trailing zeros dropped. */
  function decimalOf(n, places) {
    const scale = 10n ** BigInt(places);
    const a = n < 0n ? -n : n;
    const q = (2n * a * scale + ONE) / (2n * ONE); // rounded to nearest
    let text = q.toString().padStart(places + 1, "0");
    if (places > 0) text = `${text.slice(0, -places)}.${text.slice(-places)}`.replace(/\.?0+$/, "");
    return q === 0n ? "0" : (n < 0n ? "-" : "") + text;
  }

  /** Decimal places that pin a point to a hundredth of a pixel at ``zoom`` (a pixel is 2^-(zoom+6) wide). */
  const placesFor = (zoom) => clamp(Math.ceil((Math.max(zoom, 0) + 6 + 7) * Math.log10(2)) + 1, 2, 340);

  /** ``value`` rounded to what the URL says of it at ``zoom``: the view and its link agree exactly. */
  const snap = (value, zoom) => exactOfDecimal(decimalOf(value, placesFor(zoom)));

  const LIMIT = BigInt(2) * ONE; // centres and c stay on the tile pyramid's square
  const clampExact = (n) => (n < -LIMIT ? -LIMIT : n > LIMIT ? LIMIT : n);

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
      return clamp(Math.round(this.view.zoom + Math.log2(dpr)), 0, MAX_DEEP_LEVEL);
    }

    /** The exact point under pane pixel (px, py). */
    toComplex(px, py) {
      const [w, h] = this.size();
      const r = this.res();
      return [this.view.x + exactOf((px - w / 2) * r), this.view.y - exactOf((py - h / 2) * r)];
    }

    /** The pane pixel of an exact point. */
    toScreen(re, im) {
      const [w, h] = this.size();
      const r = this.res();
      return [w / 2 + floatOf(re - this.view.x) / r, h / 2 - floatOf(im - this.view.y) / r];
    }

    /** ``view``: {x, y} exact (BigInt), zoom a number. */
    setView(view) {
      const zoom = Number(clamp(view.zoom, MIN_ZOOM, MAX_DEEP_LEVEL).toFixed(3));
      this.view = { x: snap(clampExact(view.x), zoom), y: snap(clampExact(view.y), zoom), zoom };
      this.schedule();
      this.onChange(this);
    }

    panBy(dx, dy) {
      const r = this.res();
      this.setView({ x: this.view.x - exactOf(dx * r), y: this.view.y + exactOf(dy * r), zoom: this.view.zoom });
    }

    /** Zoom by ``dz`` levels keeping the point under (px, py) where it is. */
    zoomAround(px, py, dz) {
      const [re, im] = this.toComplex(px, py);
      const [w, h] = this.size();
      const zoom = clamp(this.view.zoom + dz, MIN_ZOOM, MAX_DEEP_LEVEL);
      const r = EXTENT / (TILE * 2 ** zoom);
      this.setView({ x: re - exactOf((px - w / 2) * r), y: im + exactOf((py - h / 2) * r), zoom });
    }

    /** Where the view's centre is in the tile grid of level ``z``: a whole BigInt and a float fraction
     * per axis (columns from real -2, rows from imaginary +2 downwards). */
    gridAt(z) {
      const k = FRAC_BITS + 2 - z; // a tile of level z is 2^(2-z) wide (EXTENT = 4)
      const split = (u) => {
        const whole = shift(u, -k);
        return [whole, floatOf(shift(u - shift(whole, k), FRAC_BITS - k))];
      };
      const [ix, fx] = split(this.view.x - BigInt(LEFT) * ONE);
      const [iy, fy] = split(BigInt(TOP) * ONE - this.view.y);
      return { ix, fx, iy, fy };
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
      const last = (1n << BigInt(z)) - 1n;
      const r = this.res();
      const across = (w / 2) * r / (EXTENT / 2 ** z); // half the pane, in tiles
      const down = (h / 2) * r / (EXTENT / 2 ** z);
      const g = this.gridAt(z);
      const big = (v) => BigInt(Math.floor(v));
      const within = (v) => (v < 0n ? 0n : v > last ? last : v);
      const x0 = within(g.ix + big(g.fx - across));
      const x1 = within(g.ix + big(g.fx + across));
      const y0 = within(g.iy + big(g.fy - down));
      const y1 = within(g.iy + big(g.fy + down));
      // The tiles of the view, nearest the centre first: they are requested first.
      const needed = [];
      for (let ty = y0; ty <= y1; ty++) {
        for (let tx = x0; tx <= x1; tx++) {
          needed.push([(Number(tx - g.ix) + 0.5 - g.fx) ** 2 + (Number(ty - g.iy) + 0.5 - g.fy) ** 2, tx, ty]);
        }
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
      const grids = new Map([[z, g]]);
      for (const [url, t] of this.tiles) {
        if (!grids.has(t.z)) grids.set(t.z, this.gridAt(t.z));
        this.place(t, wanted.has(url), grids.get(t.z), w, h, r);
      }
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

    /** Put tile ``t`` where it belongs, given the view's centre ``g`` in the tile grid of its level. */
    place(t, current, g, w, h, r) {
      const size = EXTENT / 2 ** t.z / r; // the tile's width in pane pixels
      const px = w / 2 + (Number(t.x - g.ix) - g.fx) * size;
      const py = h / 2 + (Number(t.y - g.iy) - g.fy) * size;
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
  const DEFAULT_C = ["-0.8", "0.156"];
  const COLORMAPS = [...$("colormap").options].map((o) => o.value);
  // c as the digits that name it (what the tiles and a job are asked for) and as exact values.
  const state = { c: DEFAULT_C.slice(), cExact: DEFAULT_C.map(exactOfDecimal), colormap: COLORMAPS[0] };

  /** The view that fits ``box`` ([re0, re1, im0, im1]) into the pane. */
  function fit(pane, box) {
    const w = pane.clientWidth || 512;
    const h = pane.clientHeight || 512;
    const units = Math.max((box[1] - box[0]) / w, (box[3] - box[2]) / h);
    const zoom = Math.log2(EXTENT / (TILE * units));
    return { x: exactOf((box[0] + box[1]) / 2), y: exactOf((box[2] + box[3]) / 2), zoom: Number(zoom.toFixed(2)) };
  }

  /** ``count`` comma-separated decimals as their texts, or null. */
  function decimals(text, count) {
    if (typeof text !== "string") return null;
    const parts = text.split(",").map((p) => p.trim());
    if (parts.length !== count || parts.some((p) => exactOfDecimal(p) === null)) return null;
    return parts;
  }

  /** A pane's view from the URL, "x,y,zoom" (decimals of any length, as written by ``hashOf``). */
  function viewOf(text) {
    const parts = decimals(text, 3);
    const zoom = parts && Number(parts[2]);
    return parts && Number.isFinite(zoom) ? { x: exactOfDecimal(parts[0]), y: exactOfDecimal(parts[1]), zoom } : null;
  }

  function readUrl() {
    const params = new URLSearchParams(location.hash.slice(1));
    const colormap = params.get("colormap");
    return {
      c: decimals(params.get("c"), 2),
      m: viewOf(params.get("m")),
      j: viewOf(params.get("j")),
      colormap: COLORMAPS.includes(colormap) ? colormap : null,
    };
  }

  let lastHash = "";
  let urlTimer = 0;

  function hashOf() {
    const v = (view) => {
      const places = placesFor(view.zoom);
      return `${decimalOf(view.x, places)},${decimalOf(view.y, places)},${view.zoom}`;
    };
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
    const [re, im] = state.cExact.map(floatOf);
    $("c-value").textContent = `${re.toFixed(4)} ${im < 0 ? "−" : "+"} ${Math.abs(im).toFixed(4)}i`;
    $("c-value").title = `${state.c[0]}, ${state.c[1]}`;
    placeMarker();
  }

  function placeMarker() {
    const [px, py] = mandelbrot.toScreen(state.cExact[0], state.cExact[1]);
    const marker = $("marker");
    marker.style.left = `${px}px`;
    marker.style.top = `${py}px`;
    marker.hidden = !(px > -20 && py > -20 && px < mandelbrot.size()[0] + 20 && py < mandelbrot.size()[1] + 20);
  }

  function tileQueries() {
    mandelbrot.setQuery(`colormap=${state.colormap}`);
    julia.setQuery(`c=${state.c[0]},${state.c[1]}&colormap=${state.colormap}`);
  }

  /** c as decimal texts (kept as written: they are what the tiles and a job are asked for). */
  function takeC(texts) {
    const given = texts.map(exactOfDecimal);
    state.cExact = given.map(clampExact);
    state.c = texts.map((t, i) => (given[i] === state.cExact[i] ? t : decimalOf(state.cExact[i], 20)));
  }

  function setC(c) {
    takeC(c);
    showC();
    tileQueries();
    writeUrl();
  }

  /** c from a point of the Mandelbrot pane, to a hundredth of its pixels. */
  function cAt(px, py) {
    const places = placesFor(mandelbrot.view.zoom);
    return mandelbrot.toComplex(px, py).map((v) => decimalOf(clampExact(v), places));
  }

  mandelbrot.afterDraw.push(placeMarker);
  attachGestures(mandelbrot, (px, py) => setC(cAt(px, py)));
  attachGestures(julia, () => {});

  // Each pane says its tile level, the iterations that level uses, and the point under the pointer.
  for (const [layer, id] of [[mandelbrot, "mandelbrot-readout"], [julia, "julia-readout"]]) {
    let cursor = null;
    const show = () => {
      const level = layer.level();
      const places = clamp(Math.ceil(-Math.log10(layer.res())), 2, 340);
      const where = cursor ? ` · ${decimalOf(cursor[0], places)}, ${decimalOf(cursor[1], places)}i` : "";
      // Beyond float64's zooms the tiles are deep views: say so, with the pane's width in the plane.
      const deep = level > MAX_LEVEL ? ` · deep · ${(layer.size()[0] * layer.res()).toExponential(1)} wide` : "";
      layer.pane.classList.toggle("deep", level > MAX_LEVEL);
      $(id).textContent = `zoom ${level} · ${maxIterFor(level).toLocaleString("en")} iterations${deep}${where}`;
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
      takeC(cAt(e.clientX - rect.left, e.clientY - rect.top));
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
    takeC(given.c || DEFAULT_C);
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
      center: [julia.view.x, julia.view.y].map((v) => decimalOf(v, placesFor(julia.view.zoom))),
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
