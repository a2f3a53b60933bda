/* strokelrp's relevance viewer: NiiVue (window.niivue, loaded before this script) over the
 * volumes embedded in the page as base64 NIfTI (<script id="strokelrp-data">, built by
 * strokelrp.report.viewer). All volumes share one grid and affine, so one voxel index reads
 * every volume. Exposes window.strokelrpViewer (state, select(), ready) for tests. */
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("strokelrp-data").textContent);
  const $ = (id) => document.getElementById(id);
  // Diverging, colour-blind safe (ColorBrewer RdBu halves): pale near the threshold, dark at max |R|.
  // Index 0 (|R| at or below the threshold) is transparent.
  const POS = { R: [0, 253, 244, 214, 178, 103], G: [0, 219, 165, 96, 24, 0], B: [0, 199, 130, 77, 43, 31],
                A: [0, 255, 255, 255, 255, 255], I: [0, 1, 64, 128, 192, 255] };
  const NEG = { R: [0, 209, 146, 67, 33, 5], G: [0, 229, 197, 147, 102, 48], B: [0, 240, 222, 195, 172, 97],
                A: [0, 255, 255, 255, 255, 255], I: [0, 1, 64, 128, 192, 255] };
  const OUTLINE = { truth: [0, 200, 0], prediction: [255, 200, 0] };
  const state = {
    channel: data.channels.includes(data.start_channel) ? data.start_channel : data.channels[0],
    setting: data.settings[0],
    threshold: 0.1,
    radiological: true,
    layout: "multiplanar",
    outlines: { truth: true, prediction: true },
  };
  // A link may set the start: #layout=axial&threshold=0&radiological=0&truth=0&setting=...
  const hash = new URLSearchParams(location.hash.slice(1));
  for (const key of ["channel", "setting", "layout"]) if (hash.has(key)) state[key] = hash.get(key);
  if (hash.has("threshold")) state.threshold = Number(hash.get("threshold"));
  if (hash.has("radiological")) state.radiological = hash.get("radiological") !== "0";
  for (const name of ["truth", "prediction"]) if (hash.has(name)) state.outlines[name] = hash.get(name) !== "0";
  const cache = new Map();
  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1],
    show3Dcrosshair: true,
    isOrientationTextVisible: true,
    isRadiologicalConvention: true,
    multiplanarShowRender: niivue.SHOW_RENDER.ALWAYS,
    crosshairColor: [1, 0, 1, 1],
    crosshairWidth: 0.6,
    crosshairWidthUnit: "percent",
    isColorbar: false,
  });
  nv.addColormap("strokelrp_pos", POS);
  nv.addColormap("strokelrp_neg", NEG);

  async function volume(key, opts) {
    if (!cache.has(key)) {
      cache.set(key, niivue.NVImage.loadFromBase64({ base64: data.volumes[key], name: key + ".nii.gz", ...opts }));
    }
    return cache.get(key);
  }

  function peak() {
    return data.peaks[state.setting][state.channel];
  }

  function styleRelevance(img) {
    const top = peak() > 0 ? peak() : 1;
    img.colormap = "strokelrp_pos";
    img.colormapNegative = "strokelrp_neg";
    img.cal_min = state.threshold * top;
    img.cal_max = top;
    img.cal_minNeg = -top;
    img.cal_maxNeg = -state.threshold * top;
    img.opacity = 0.8;
  }

  function label(name) {
    const [r, g, b] = OUTLINE[name];
    // interior transparent: NiiVue's atlas outline draws the mask's border voxels only
    return { R: [0, r], G: [0, g], B: [0, b], A: [0, 0], I: [0, 1], labels: ["", name] };
  }

  async function show() {
    const wanted = [];
    if (data.volumes["mr/" + state.channel]) {
      const bg = await volume("mr/" + state.channel, { colormap: "gray" });
      wanted.push(bg);
    }
    const rel = await volume("relevance/" + state.setting + "/" + state.channel, {});
    styleRelevance(rel);
    wanted.push(rel);
    for (const name of ["truth", "prediction"]) {
      if (data.volumes[name] && state.outlines[name]) {
        const img = await volume(name, { colormapLabel: label(name) });
        img.setColormapLabel(label(name));
        wanted.push(img);
      }
    }
    for (const v of nv.volumes.slice()) if (!wanted.includes(v)) nv.removeVolume(v);
    wanted.forEach((v, k) => {
      if (!nv.volumes.includes(v)) nv.addVolume(v);
      nv.setVolume(v, k);
    });
    nv.setAtlasOutline(1);
    nv.updateGLVolume();
    legend();
    readout();
  }

  function fmt(x) {
    return Number.isFinite(x) ? Number(x.toPrecision(5)).toString() : "–";
  }

  // NiiVue's vox is an index of the RAS-reordered grid; the files' own index undoes data.to_ras.
  function fileVoxel(ras) {
    const out = [0, 0, 0];
    data.to_ras.forEach(([axis, flip], k) => {
      out[axis] = flip ? data.shape[axis] - 1 - ras[k] : ras[k];
    });
    return out;
  }

  function readout() {
    if (!nv.volumes.length) return;
    const frac = nv.scene.crosshairPos;
    const ras = nv.frac2vox(frac, 0).map((v) => Math.round(v));
    const ijk = fileVoxel(ras);
    const rel = nv.volumes.find((v) => v.name.startsWith("relevance/"));
    const bg = nv.volumes.find((v) => v.name.startsWith("mr/"));
    const value = rel.getValue(ras[0], ras[1], ras[2]);
    const intensity = bg ? bg.getValue(ras[0], ras[1], ras[2]) : NaN;
    const out = $("readout");
    out.dataset.voxel = ijk.join(",");
    out.dataset.relevance = String(value);
    out.dataset.intensity = String(intensity);
    out.textContent =
      `voxel (${ijk.join(", ")}) of the files · ${state.channel} intensity ${bg ? fmt(intensity) : "(no MR file)"}` +
      ` · relevance ${fmt(value)}` + (peak() > 0 ? ` (${fmt((100 * value) / peak())} % of max |R|)` : "");
  }

  function legend() {
    const p = peak();
    $("scale").textContent =
      `colour range symmetric about 0: −${fmt(p)} … +${fmt(p)} (max |R| of ${state.channel}, ${state.setting}); ` +
      (state.threshold > 0 ? `|R| below ${fmt(state.threshold * p)} hidden` : "every non-zero voxel coloured");
    const rad = state.radiological;
    $("orientation").textContent = rad
      ? "radiological: the patient's right (R) on the screen's left, L on the right; A up in axial"
      : "neurological: the patient's left (L) on the screen's left, R on the right; A up in axial";
    $("orientation").dataset.screenLeft = rad ? "R" : "L";
    $("orientation").dataset.screenRight = rad ? "L" : "R";
  }

  function layout() {
    const types = { multiplanar: niivue.SLICE_TYPE.MULTIPLANAR, axial: niivue.SLICE_TYPE.AXIAL,
      coronal: niivue.SLICE_TYPE.CORONAL, sagittal: niivue.SLICE_TYPE.SAGITTAL, render: niivue.SLICE_TYPE.RENDER };
    nv.setSliceType(types[state.layout]);
  }

  function fill(select, values, value) {
    select.innerHTML = "";
    for (const v of values) {
      const o = document.createElement("option");
      o.value = o.textContent = v;
      select.appendChild(o);
    }
    select.value = value;
  }

  async function select(changes) {
    Object.assign(state, changes);
    for (const name of ["truth", "prediction"]) $("outline-" + name).checked = state.outlines[name];
    $("channel").value = state.channel;
    $("setting").value = state.setting;
    $("threshold").value = String(state.threshold);
    $("radiological").checked = state.radiological;
    $("layout").value = state.layout;
    nv.setRadiologicalConvention(state.radiological);
    layout();
    await show();
  }

  async function start() {
    await nv.attachTo("strokelrp-gl");
    fill($("channel"), data.channels, state.channel);
    fill($("setting"), data.settings, state.setting);
    for (const name of ["truth", "prediction"]) $("outline-" + name).disabled = !data.volumes[name];
    $("channel").onchange = (e) => select({ channel: e.target.value });
    $("setting").onchange = (e) => select({ setting: e.target.value });
    $("threshold").oninput = (e) => select({ threshold: Number(e.target.value) });
    $("radiological").onchange = (e) => select({ radiological: e.target.checked });
    $("layout").onchange = (e) => select({ layout: e.target.value });
    for (const name of ["truth", "prediction"]) {
      $("outline-" + name).onchange = (e) =>
        select({ outlines: { ...state.outlines, [name]: e.target.checked } });
    }
    nv.onLocationChange = () => readout();
    await select({});
    if (data.focus_ras) {  // start at the lesion (a voxel of the ground truth, else prediction)
      nv.scene.crosshairPos = nv.vox2frac(data.focus_ras, 0);
      nv.updateGLVolume();
    }
    readout();
    document.body.dataset.ready = "1";
  }

  window.strokelrpViewer = { nv, state, select, readout, ready: start() };
  window.strokelrpViewer.ready.catch((err) => {
    $("readout").textContent = "viewer failed: " + err;
    throw err;
  });
})();
