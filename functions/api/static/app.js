// Fractal.ly explorer: a plain client of the public API (POST /v1/renders, GET /v1/renders/{id},
// GET /v1/render.png for the live preview). No framework, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("spec");
  const POLL_MS = 300;
  const PREVIEW_WIDTH = 320;
  const PREVIEW_MAX_ITER = 20000; // keeps the preview inside the synchronous-render work limit

  // --- the spec, as the form says -------------------------------------------------------------

  const num = (id) => {
    const text = $(id).value.trim();
    return text === "" ? undefined : Number(text);
  };

  function readSpec() {
    const spec = { fractal: $("fractal").value };
    if (spec.fractal === "julia") spec.c = [num("c_re"), num("c_im")];
    spec.center = [num("center_x") ?? 0, num("center_y") ?? 0];
    for (const key of ["scale", "width", "height", "max_iter"]) {
      const value = num(key);
      if (value !== undefined) spec[key] = value;
    }
    spec.format = $("format").value;
    spec.colormap = $("colormap").value;
    return spec;
  }

  // --- errors next to the field they name -----------------------------------------------------

  function clearErrors() {
    for (const el of form.querySelectorAll(".field")) {
      el.classList.remove("invalid");
      const small = el.querySelector(".error");
      if (small) small.textContent = "";
    }
    $("general-error").textContent = "";
  }

  function showError(error) {
    const field = error && error.field;
    const message = (error && error.message) || "something went wrong";
    const el = field ? form.querySelector(`.field[data-field~="${CSS.escape(field)}"]`) : null;
    if (el && el.querySelector(".error")) {
      el.classList.add("invalid");
      el.querySelector(".error").textContent = message;
    } else {
      $("general-error").textContent = message;
    }
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (_) { /* not JSON */ }
    return { message: `HTTP ${response.status}`, field: null };
  }

  // --- live preview ---------------------------------------------------------------------------

  let previewTimer = null;
  let previewAbort = null;
  let previewObjectUrl = null;

  function previewQuery(spec) {
    const width = spec.width > 0 ? spec.width : 1024;
    const height = spec.height > 0 ? spec.height : 768;
    const params = new URLSearchParams();
    params.set("fractal", spec.fractal);
    if (spec.c) params.set("c", spec.c.join(","));
    params.set("center", spec.center.join(","));
    if (spec.scale !== undefined) params.set("scale", String(spec.scale));
    if (spec.max_iter !== undefined) params.set("max_iter", String(Math.min(spec.max_iter, PREVIEW_MAX_ITER)));
    params.set("width", String(PREVIEW_WIDTH));
    params.set("height", String(Math.max(1, Math.min(PREVIEW_WIDTH, Math.round((PREVIEW_WIDTH * height) / width)))));
    params.set("colormap", spec.colormap);
    return params.toString();
  }

  async function updatePreview() {
    if (previewAbort) previewAbort.abort();
    previewAbort = new AbortController();
    clearErrors();
    const spec = readSpec();
    try {
      const response = await fetch(`v1/render.png?${previewQuery(spec)}`, { signal: previewAbort.signal });
      if (!response.ok) {
        showError(await errorOf(response));
        return;
      }
      const blob = await response.blob();
      if (previewObjectUrl) URL.revokeObjectURL(previewObjectUrl);
      previewObjectUrl = URL.createObjectURL(blob);
      $("preview").src = previewObjectUrl;
    } catch (err) {
      if (err.name !== "AbortError") $("general-error").textContent = "the preview could not be loaded";
    }
  }

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(updatePreview, 250);
  }

  // Click: centre the view there and zoom in 2x; shift-click zooms out.
  $("preview").addEventListener("click", (event) => {
    const img = event.currentTarget;
    const rect = img.getBoundingClientRect();
    const spec = readSpec();
    const scale = spec.scale > 0 ? spec.scale : 3.2;
    const fx = (event.clientX - rect.left) / rect.width - 0.5;
    const fy = (event.clientY - rect.top) / rect.height - 0.5;
    const viewHeight = (scale * rect.height) / rect.width;
    $("center_x").value = String(spec.center[0] + fx * scale);
    $("center_y").value = String(spec.center[1] - fy * viewHeight);
    $("scale").value = String(event.shiftKey ? scale * 2 : scale / 2);
    schedulePreview();
  });

  // --- render jobs ----------------------------------------------------------------------------

  let pollGeneration = 0;

  function showStatus(body) {
    const { tiles_done: done, tiles_total: total } = body.progress;
    $("job").hidden = false;
    $("job-status").textContent = body.status;
    $("job-tiles").textContent = `${done} / ${total} tiles`;
    $("progress").max = total;
    $("progress").value = done;
    $("job-link").textContent = body.id;
    $("job-link").href = `v1/renders/${body.id}`;  // relative: the page may sit under a path prefix
  }

  function showResult(body) {
    const figure = $("result");
    const { format } = body.result;
    const url = `v1/renders/${body.id}/result`;  // the api's result route, relative (see showStatus)
    $("result-link").href = url;
    if (format === "png") {
      $("result-img").hidden = false;
      $("result-img").src = url;
      $("result-caption").textContent = `${body.spec.width} × ${body.spec.height} PNG — click to open`;
    } else {
      $("result-img").hidden = true;
      $("result-img").removeAttribute("src");
      $("result-caption").textContent = "";
      const link = document.createElement("a");
      link.href = url;
      link.textContent = `download ${body.id}.msgpack (raw iteration counts)`;
      $("result-caption").append(link);
    }
    figure.hidden = false;
  }

  async function poll(url, generation) {
    if (generation !== pollGeneration) return;
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) {
        showError(await errorOf(response));
        return finish();
      }
      const body = await response.json();
      if (generation !== pollGeneration) return;
      showStatus(body);
      if (body.status === "done") {
        showResult(body);
        return finish();
      }
      if (body.status === "failed") {
        showError(body.error || { message: "the render failed" });
        return finish();
      }
    } catch (_) {
      $("general-error").textContent = "lost contact with the server; retrying…";
    }
    setTimeout(() => poll(url, generation), POLL_MS);
  }

  function finish() {
    $("render").disabled = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const generation = ++pollGeneration;
    $("render").disabled = true;
    $("result").hidden = true;
    const headers = { "Content-Type": "application/json" };
    const token = $("token").value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    try {
      const response = await fetch("v1/renders", { method: "POST", headers, body: JSON.stringify(readSpec()) });
      if (!response.ok) {
        showError(await errorOf(response));
        return finish();
      }
      const body = await response.json();
      showStatus(body);
      if (body.status === "done") {
        showResult(body);
        return finish();
      }
      setTimeout(() => poll(`v1/renders/${body.id}`, generation), POLL_MS);
    } catch (_) {
      $("general-error").textContent = "the server could not be reached";
      finish();
    }
  });

  // --- limits and colormaps from the API's own description ------------------------------------

  async function loadLimits() {
    try {
      const doc = await (await fetch("openapi.json")).json();
      const props = doc.components.schemas.RenderSpec.properties;
      const select = $("colormap");
      const current = select.value;
      select.replaceChildren(...props.colormap.enum.map((name) => new Option(name, name, false, name === current)));
      for (const key of ["width", "height", "max_iter"]) $(key).max = props[key].maximum;
    } catch (_) { /* the static defaults in the page still work */ }
  }

  form.addEventListener("input", (event) => {
    if (event.target.id !== "token") schedulePreview();
  });
  $("fractal").addEventListener("change", () => {
    const julia = $("fractal").value === "julia";
    $("c_re").disabled = $("c_im").disabled = !julia;
    if (!julia && Number($("center_x").value) === 0) $("center_x").value = "-0.5";
    schedulePreview();
  });

  loadLimits();
  updatePreview();
})();
