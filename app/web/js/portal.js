// The factory portal: sign in with a factory key (kept in sessionStorage, sent as a header, never in the URL),
// preview a catalogue's first rows, upload it as an ingest job and watch it (its failed rows as a CSV to fix),
// browse, edit and delete the factory's own products, search many photos at once.
import { call, query, storeKey, storedKey } from "./api.js";
import { previewCatalogue } from "./preview.js";
import { el } from "./results.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
let polling = null;

async function signIn(key) {
  try {
    await call("/api/v1/query-jobs?limit=1", { key }); // any valid key; catalogue writes then need a factory key
  } catch (error) {
    $("signin-error").textContent = error.status === 401 || error.status === 403 ? "Key not recognised." : error.message;
    $("signin-error").hidden = false;
    return;
  }
  storeKey(key);
  $("signin").hidden = true;
  $("signed-in").hidden = false;
  $("who").textContent = `Signed in with key ${key.slice(0, 8)}…`;
  loadJobs();
}

function signOut() {
  storeKey("");
  clearInterval(polling);
  $("signed-in").hidden = true;
  $("signin").hidden = false;
  $("key").value = "";
}

async function upload(event) {
  event.preventDefault();
  const file = $("catalogue").files[0];
  if (!file) return;
  const body = new FormData();
  body.append("file", file, file.name);
  $("send").disabled = true;
  try {
    watch(await call("/api/v1/ingest-jobs", { method: "POST", body }));
  } catch (error) {
    $("job").hidden = false;
    $("job-status").textContent = `Not accepted: ${error.message}`;
  } finally {
    $("send").disabled = false;
  }
}

async function preview() {
  const file = $("catalogue").files[0];
  $("preview").hidden = !file;
  $("send").disabled = false;
  if (!file) return;
  let found;
  try {
    found = await previewCatalogue(file);
  } catch (error) {
    found = { problem: error.message };
  }
  if (file !== $("catalogue").files[0]) return; // another file was chosen meanwhile
  $("preview-problem").hidden = !found.problem;
  $("preview-problem").textContent = found.problem || "";
  $("send").disabled = Boolean(found.problem);
  const header = found.header || [];
  $("preview-note").textContent = header.length ? `${file.name}: ${header.length} columns; its first rows as they will be read:` : file.name;
  $("preview-rows").tHead.replaceChildren(el("tr", {}, ...header.map((name) => el("th", {}, name))));
  $("preview-rows").tBodies[0].replaceChildren(...(found.rows || []).map((row) => el("tr", {}, ...header.map((_, i) => el("td", {}, row[i] ?? "")))));
}

function watch(job) {
  clearInterval(polling);
  $("job").hidden = false;
  $("errors-download").hidden = true;
  let finished = false;
  $("cancel").onclick = () => call(`/api/v1/ingest-jobs/${job.id}`, { method: "DELETE" }).then(show);
  const show = (report) => {
    $("progress").max = Math.max(report.total, 1);
    $("progress").value = report.done;
    const left = report.items_per_s > 0 ? Math.round((report.total - report.done) / report.items_per_s) : null;
    $("job-status").textContent = `${report.state}: ${report.done} of ${report.total} rows · ${report.added} added · ${report.failed} failed`
      + (report.state === "running" && left !== null ? ` · ${report.items_per_s.toFixed(1)} rows/s, about ${left} s left` : "")
      + (report.error ? ` · ${report.error}` : "");
    $("errors").hidden = !report.errors.length;
    $("errors").tBodies[0].replaceChildren(...report.errors.map((e) => el("tr", {}, el("td", {}, String(e.line)), el("td", {}, e.image), el("td", {}, e.reason))));
    $("cancel").hidden = !["queued", "running"].includes(report.state);
    if (!["queued", "running"].includes(report.state) && !finished) {
      finished = true; // a poll already in flight may answer once more
      clearInterval(polling);
      loadJobs();
      if (report.failed) offerDownload($("errors-download"), `/api/v1/ingest-jobs/${job.id}/errors`, `errors-${job.id}.csv`);
    }
  };
  show(job);
  polling = setInterval(() => call(`/api/v1/ingest-jobs/${job.id}`).then(show).catch((error) => { $("job-status").textContent = error.message; }), POLL_MS);
}

async function loadJobs() {
  const jobs = await call("/api/v1/ingest-jobs?limit=10").catch(() => []);
  $("jobs").tBodies[0].replaceChildren(...jobs.map((j) => el("tr", {}, el("td", {}, j.source), el("td", {}, j.state), el("td", {}, `${j.done}/${j.total}`), el("td", {}, String(j.added)), el("td", {}, String(j.failed)))));
}

async function browse(event) {
  if (event) event.preventDefault();
  const factory = $("factory").value.trim();
  const products = await call(`/api/v1/products?${query({ factory_id: factory, limit: 500 })}`).catch(() => []);
  // Counts only (how often searches showed each product, and as a confident match); a key of another factory gets none.
  const counts = await call(`/api/v1/factories/${encodeURIComponent(factory)}/search-counts`).catch(() => []);
  const found = Object.fromEntries(counts.map((c) => [c.product_id, `${c.shown} / ${c.confident} confident`]));
  $("products").tBodies[0].replaceChildren(...products.map((p) => el("tr", { "data-product": p.id },
    el("td", {}, p.id), el("td", {}, p.title), el("td", {}, p.price ?? ""), el("td", {}, p.moq ?? ""), el("td", {}, String(p.image_ids.length)), el("td", { class: "found" }, found[p.id] || "0"),
    el("td", {}, el("button", { type: "button", class: "edit", onclick: () => edit(p) }, "Edit"), " ",
      el("button", { type: "button", class: "delete", onclick: () => remove(p.id) }, "Delete")))));
}

function edit(product) {
  const row = document.querySelector(`#products tr[data-product="${CSS.escape(product.id)}"]`);
  const field = (name, value, type = "text") => el("input", { name, value: value ?? "", type, "aria-label": name, ...(type === "number" ? { step: "any", min: "0" } : {}) });
  const form = el("form", { class: "edit-form" },
    field("title", product.title), field("category", product.category), field("price", product.price, "number"), field("moq", product.moq, "number"),
    el("button", { type: "submit" }, "Save"), el("button", { type: "button", onclick: browse }, "Cancel"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const changes = {
      title: values.title.trim() || product.title,
      category: values.category.trim() || null,
      price: values.price === "" ? null : Number(values.price),
      moq: values.moq === "" ? null : Math.round(Number(values.moq)),
    };
    try {
      await call(`/api/v1/products/${encodeURIComponent(product.id)}`, { method: "PATCH", body: JSON.stringify(changes), json: true });
      browse();
    } catch (error) {
      form.append(el("span", { role: "alert", class: "form-error" }, error.message));
    }
  });
  row.replaceChildren(el("td", { colspan: "7" }, form));
}

async function remove(productId) {
  if (!confirm(`Delete ${productId} and its images? Searches stop finding it at once.`)) return;
  await call(`/api/v1/products/${encodeURIComponent(productId)}`, { method: "DELETE" }).catch((error) => alert(error.message));
  browse();
}

async function batch(event) {
  event.preventDefault();
  const body = new FormData();
  body.append("file", $("batch-file").files[0], $("batch-file").files[0].name);
  body.append("top_k", $("batch-top").value || "3");
  $("batch-job").hidden = false;
  $("batch-download").hidden = true;
  try {
    const job = await call("/api/v1/query-jobs", { method: "POST", body });
    const timer = setInterval(async () => {
      let report;
      try {
        report = await call(`/api/v1/query-jobs/${job.id}`);
      } catch (error) {
        clearInterval(timer);
        $("batch-status").textContent = error.message;
        return;
      }
      $("batch-progress").max = Math.max(report.total, 1);
      $("batch-progress").value = report.done;
      $("batch-status").textContent = `${report.state}: ${report.done} of ${report.total} photos · ${report.failed} failed`;
      if (["done", "failed", "cancelled"].includes(report.state)) {
        clearInterval(timer);
        offerDownload($("batch-download"), `/api/v1/query-jobs/${job.id}/results?format=csv`, `sourcelens-${job.id}.csv`);
      }
    }, POLL_MS);
  } catch (error) {
    $("batch-status").textContent = `Not accepted: ${error.message}`;
  }
}

async function offerDownload(link, path, filename) {
  // A download needs the key, sent as a header: fetched here and offered as a file, never a link with the key.
  const response = await fetch(path, { headers: { "X-API-Key": storedKey() } });
  if (!response.ok) return;
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.hidden = false;
}

$("batch").addEventListener("submit", batch);
$("signin").addEventListener("submit", (e) => { e.preventDefault(); signIn($("key").value.trim()); });
$("signout").addEventListener("click", signOut);
$("upload").addEventListener("submit", upload);
$("catalogue").addEventListener("change", preview);
$("browse").addEventListener("submit", browse);
if (storedKey()) signIn(storedKey());
