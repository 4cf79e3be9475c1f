// The SourceLens page: one photo in, ranked factory cards out, all through the public API.
const drop = document.getElementById("drop");
const fileInput = document.getElementById("file");
const preview = document.getElementById("preview");
const prompt = document.getElementById("prompt");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const topK = document.getElementById("topk");
const weak = document.getElementById("weak");
let lastFile = null;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function evidenceText(match) {
  const e = match.evidence;
  if (!e) return `similarity ${match.similarity.toFixed(3)}`;
  return `${e.inliers} matching local features, pixel agreement ${e.agreement.toFixed(2)}${e.mirrored ? ", mirrored" : ""}`;
}

function renderFactories(body) {
  results.replaceChildren();
  if (!body.factories.length) {
    results.append(el("p", { class: "meta" }, body.message || "No catalogue images yet: ingest a manifest first."));
    return;
  }
  body.factories.forEach((factory, i) => {
    const matches = el("div", { class: "matches" });
    for (const match of factory.matches) {
      matches.append(el("figure", { class: "match" },
        el("img", { src: match.image_url, alt: match.title, loading: "lazy" }),
        el("b", { title: match.title }, match.title),
        el("span", { class: `level ${match.match_level}`, title: evidenceText(match) }, match.match_level.replace("_", " ")),
        `${match.product_id} · ${match.similarity.toFixed(3)}`));
    }
    results.append(el("article", { class: "card", "data-factory": factory.factory_id },
      el("h2", {}, el("span", { class: "rank" }, `#${i + 1}`), factory.name,
        el("span", { class: "score", title: "factory score" }, factory.score.toFixed(3))),
      el("div", { class: "meta" }, `${factory.factory_id} · ${factory.region || "region unknown"} · ${factory.matches.length} matching product(s)`),
      matches));
  });
}

async function search(file) {
  lastFile = file;
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  prompt.hidden = true;
  setStatus("Searching…");
  const form = new FormData();
  form.append("image", file);
  form.append("top_k", topK.value || "10");
  form.append("include_weak", weak.checked ? "true" : "false");
  try {
    const response = await fetch("/api/v1/search", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    renderFactories(body);
    setStatus(`${body.factories.length} factories in ${Math.round(body.took_ms)} ms`);
  } catch (error) {
    results.replaceChildren();
    setStatus(`Could not search: ${error.message}`, true);
  }
}

fileInput.addEventListener("change", () => fileInput.files[0] && search(fileInput.files[0]));
topK.addEventListener("change", () => lastFile && search(lastFile));
weak.addEventListener("change", () => lastFile && search(lastFile));
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") fileInput.click(); });
for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) search(file);
});
