"""The participant page: one static HTML document driven by /api/state.

Kept as a Python string (not a data file) so it ships with the package without package-data
rules. The script builds every element with textContent, never innerHTML, so nothing from the
server is ever parsed as markup. Element ids are what the browser tests click.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Listening study</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}
 fieldset{margin:1rem 0;border:1px solid #ccc} .hidden{display:none}
 label{margin-right:.8rem;white-space:nowrap} #error{color:#b00}
 button{font-size:1rem;padding:.4rem 1.2rem}
</style></head>
<body>
<h1 id="title">Listening study</h1>
<section id="consent" class="hidden">
  <p id="consent-text"></p>
  <label><input type="checkbox" id="consent-check"> I agree to take part.</label>
  <p><button id="consent-btn" disabled>Start</button></p>
</section>
<section id="trial" class="hidden">
  <h2 id="trial-title"></h2>
  <p><progress id="progress-bar" max="1" value="0"></progress> <span id="progress"></span></p>
  <audio id="audio" controls preload="auto"></audio>
  <fieldset id="task-identify"><legend>Which emotion do you hear?</legend>
    <div id="emotions"></div></fieldset>
  <fieldset id="task-intensity"><legend>How intense is it? (1 = weak, 5 = strong)</legend>
    <div id="intensity"></div></fieldset>
  <fieldset id="task-naturalness"><legend>How natural does it sound?
    (1 = bad, 5 = excellent)</legend><div id="naturalness"></div></fieldset>
  <p><button id="next-btn" disabled>Next</button></p>
</section>
<section id="done" class="hidden"><h2>Thank you!</h2>
  <p id="done-text">All your answers are saved. You may close this page.</p></section>
<p id="error" role="alert"></p>
<script>
"use strict";
// A link may carry ?pid=; once the server answers with the participant it minted, that id
// replaces the link's (which may be stale or invented) in every call and in the address bar.
let pid = new URLSearchParams(location.search).get("pid");
let current = null, shownAt = 0;

function radios(containerId, name, values) {
  const box = document.getElementById(containerId);
  box.replaceChildren();
  for (const v of values) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = name; input.value = String(v);
    input.id = name + "-" + v;
    input.addEventListener("change", updateNext);
    label.append(input, " " + v);
    box.append(label);
  }
}
function picked(name) {
  const el = document.querySelector("input[name='" + name + "']:checked");
  return el ? el.value : null;
}
function updateNext() {
  const need = current.tasks.map(t => t === "identify" ? "emotion" : t);
  document.getElementById("next-btn").disabled = need.some(n => picked(n) === null);
}
function show(id) {
  for (const s of ["consent", "trial", "done"])
    document.getElementById(s).classList.toggle("hidden", s !== id);
}
function render(st) {
  current = st;
  if (st.pid && pid !== null && st.pid !== pid) {
    pid = st.pid;
    history.replaceState(null, "", "?pid=" + encodeURIComponent(pid));
  }
  document.getElementById("error").textContent = "";
  if (st.stage === "consent") {
    document.getElementById("consent-text").textContent = st.consent_text;
    show("consent"); return;
  }
  if (st.stage === "done") { show("done"); return; }
  const p = st.progress, practice = st.stage === "practice";
  document.getElementById("trial-title").textContent =
    practice ? "Practice trial" : "Trial " + (p.done + 1) + " of " + p.total;
  document.getElementById("progress").textContent = p.done + " / " + p.total;
  const bar = document.getElementById("progress-bar");
  bar.max = p.total; bar.value = p.done;
  document.getElementById("audio").src = st.trial.audio;
  for (const t of ["identify", "intensity", "naturalness"])
    document.getElementById("task-" + t).classList.toggle("hidden", !st.tasks.includes(t));
  radios("emotions", "emotion", st.emotions);
  radios("intensity", "intensity", [1, 2, 3, 4, 5]);
  radios("naturalness", "naturalness", [1, 2, 3, 4, 5]);
  shownAt = performance.now();
  show("trial"); updateNext();
}
async function call(method, url, body) {
  const opts = {method, credentials: "same-origin", headers: {}};
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body);
  }
  const r = await fetch(url + (pid ? "?pid=" + encodeURIComponent(pid) : ""), opts);
  if (!r.ok) throw new Error("server said " + r.status);
  return r.json();
}
async function guarded(fn) {
  try { render(await fn()); }
  catch (e) { document.getElementById("error").textContent = e.message + " - please retry."; }
}
document.getElementById("consent-check").addEventListener("change", e => {
  document.getElementById("consent-btn").disabled = !e.target.checked;
});
document.getElementById("consent-btn").addEventListener("click",
  () => guarded(() => call("POST", "/api/consent")));
document.getElementById("next-btn").addEventListener("click", () => {
  document.getElementById("next-btn").disabled = true;
  const num = n => (picked(n) === null ? null : Number(picked(n)));
  const body = {emotion: picked("emotion"), intensity: num("intensity"),
                naturalness: num("naturalness")};
  if (current.stage === "practice") return guarded(() => call("POST", "/api/practice", body));
  Object.assign(body, {trial_index: current.trial.trial_index,
                       stimulus_id: current.trial.stimulus_id,
                       rt_ms: Math.round(performance.now() - shownAt)});
  return guarded(() => call("POST", "/api/answer", body));
});
guarded(() => call("GET", "/api/state"));
</script>
</body></html>
"""
