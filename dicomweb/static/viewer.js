// Minimal DICOMweb viewer: QIDO-RS for studies, series and instances, WADO-RS /rendered for frames.
"use strict";

const base = document.body.dataset.dicomweb;
const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("viewer-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);  // the token leaves the address bar
}
const token = sessionStorage.getItem("viewer-token");
const state = { study: query.get("study"), series: null, frames: [], index: 0, url: null, seq: 0 };
const $ = (id) => document.getElementById(id);

function value(item, tag) {
  const element = item[tag];
  if (!element || !element.Value || !element.Value.length) return "";
  const v = element.Value[0];
  return typeof v === "object" ? (v.Alphabetic || "") : String(v);
}

async function api(path, accept) {
  const headers = { Accept: accept };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(base + path, { headers });
  if (!response.ok) {
    let detail = response.status + " " + response.statusText;
    try { detail = (await response.json()).issue[0].diagnostics || detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return response;
}

const json = async (path) => (await api(path, "application/dicom+json")).json();

function status(text) { $("status").textContent = text; }

async function listStudies() {
  const studies = await json("/studies?limit=100");
  const list = $("studies");
  list.replaceChildren();
  for (const s of studies) {
    const uid = value(s, "0020000D");
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "?study=" + encodeURIComponent(uid);
    a.textContent = [value(s, "00100010"), value(s, "00080020"), value(s, "00081030"), value(s, "00080061")]
      .filter(Boolean).join(" · ") || uid;
    li.append(a);
    list.append(li);
  }
  status(studies.length ? "Choisissez un examen." : "Aucun examen.");
}

async function openStudy(uid) {
  const [study] = await json("/studies?StudyInstanceUID=" + encodeURIComponent(uid));
  if (study) {
    $("study-info").textContent = [value(study, "00100010"), value(study, "00100020"), value(study, "00080020"),
      value(study, "00081030")].filter(Boolean).join(" · ");
  }
  const series = await json("/studies/" + uid + "/series?includefield=SeriesDescription");
  const list = $("series-list");
  list.replaceChildren();
  for (const s of series) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.series = value(s, "0020000E");
    button.textContent = [value(s, "00080060"), "n°" + value(s, "00200011"), value(s, "0008103E"),
      "(" + value(s, "00201209") + " im.)"].filter((t) => t && t !== "n°").join(" ");
    button.addEventListener("click", () => openSeries(button.dataset.series));
    li.append(button);
    list.append(li);
  }
  if (series.length) await openSeries(value(series[0], "0020000E"));
  else status("Cet examen n'a pas de série.");
}

async function openSeries(uid) {
  state.series = uid;
  for (const b of document.querySelectorAll("#series-list button")) {
    b.setAttribute("aria-pressed", String(b.dataset.series === uid));
  }
  const instances = await json("/studies/" + state.study + "/series/" + uid + "/instances");
  instances.sort((a, b) => (Number(value(a, "00200013")) || 0) - (Number(value(b, "00200013")) || 0));
  state.frames = [];
  for (const inst of instances) {
    if (!value(inst, "00280010")) continue;  // no pixel data (SR, KOS…): nothing to show
    const count = Number(value(inst, "00280008")) || 1;
    for (let f = 1; f <= count; f++) state.frames.push({ sop: value(inst, "00080018"), frame: f, count });
  }
  const slider = $("slider");
  slider.max = String(Math.max(1, state.frames.length));
  if (!state.frames.length) { status("Pas d'image dans cette série."); return; }
  await show(0);
}

async function show(index) {
  if (!state.frames.length) return;
  state.index = Math.max(0, Math.min(state.frames.length - 1, index));
  const { sop, frame, count } = state.frames[state.index];
  const seq = ++state.seq;
  const path = "/studies/" + state.study + "/series/" + state.series + "/instances/" + sop +
    (count > 1 ? "/frames/" + frame : "") + "/rendered";
  $("slider").value = String(state.index + 1);
  $("position").textContent = (state.index + 1) + " / " + state.frames.length;
  try {
    const blob = await (await api(path, "image/jpeg")).blob();
    if (seq !== state.seq) return;  // a newer frame was asked for meanwhile
    const img = $("frame");
    const url = URL.createObjectURL(blob);
    img.onload = () => {
      if (state.url) URL.revokeObjectURL(state.url);
      state.url = url;
      img.dataset.frame = String(state.index + 1);
      status("Image " + (state.index + 1) + " / " + state.frames.length);
    };
    img.src = url;
  } catch (e) {
    status("Erreur : " + e.message);
  }
}

$("slider").addEventListener("input", (e) => show(Number(e.target.value) - 1));
$("frame").addEventListener("wheel", (e) => { e.preventDefault(); show(state.index + (e.deltaY > 0 ? 1 : -1)); },
  { passive: false });
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown" || e.key === "ArrowRight") { show(state.index + 1); e.preventDefault(); }
  if (e.key === "ArrowUp" || e.key === "ArrowLeft") { show(state.index - 1); e.preventDefault(); }
});

(state.study ? openStudy(state.study) : listStudies()).catch((e) => status("Erreur : " + e.message));
