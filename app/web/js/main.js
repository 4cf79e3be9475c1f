// The seller page: photos (file, drop, paste, camera; up to four views) with a search area each, optional
// words and filters, paging, more-like-this and factory pages. What is searched lives in the URL (so a result
// can be shared, reloaded and navigated with Back); the photos themselves stay in sessionStorage.
import { ApiError, call, query, storeKey, storedKey } from "./api.js";
import { CropBox } from "./crop.js";
import { el, factoryCard, factoryPage, noMatch, skeleton } from "./results.js";
import { Watcher } from "./watch.js";

const PAGE = 10; // factories per page, unless the URL says per=N
const MAX_VIEWS = 4;
const MAX_BYTES = 20 * 1024 * 1024;
const PHOTOS = "sourcelens.photos";
const FILTERS = ["text", "region", "category", "min_price", "max_price", "max_moq", "min_score", "factory_attributes"];
const SWITCHES = ["weak", "noverify", "nocrop", "each"]; // booleans in the URL as 1
const $ = (id) => document.getElementById(id);

let views = []; // {url (data URL), box ([x0,y0,x1,y1] fractions or null), subjects}
let active = 0;
let inFlight = null;
let coolDown = null;
const crop = new CropBox($("stage"), $("crop"), (box) => { views[active].box = box; scheduleSearch(); });
const watcher = new Watcher({
  photo: () => (views.length && !views[active].remote ? views[active] : null),
  openFactory: (id) => navigate({ factory: id }),
  explain: (error) => { $("key-box").open = true; showAlert(error.message); },
});

// --- state in the URL -----------------------------------------------------------------------------------
function readState() {
  const params = new URLSearchParams(location.search);
  const per = Math.min(100, Math.max(1, Number(params.get("per")) || PAGE));
  const state = { page: Math.max(1, Number(params.get("page")) || 1), per, like: params.get("like"), factory: params.get("factory") };
  for (const name of SWITCHES) state[name] = params.get(name) === "1";
  for (const name of FILTERS) state[name] = params.get(name) || "";
  return state;
}

function writeState(changes, push = true) {
  const state = { ...readState(), ...changes };
  const params = {};
  for (const name of FILTERS) params[name] = state[name];
  Object.assign(params, { per: state.per !== PAGE ? state.per : "", page: state.page > 1 ? state.page : "", like: state.like || "", factory: state.factory || "" });
  for (const name of SWITCHES) params[name] = state[name] ? "1" : "";
  const url = `${location.pathname}?${query(params)}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

function filtersFromForm() {
  const values = {};
  for (const name of FILTERS) values[name] = $(name).value.trim();
  for (const name of ["weak", "noverify", "nocrop"]) values[name] = $(name).checked;
  return values;
}

function formFromState(state) {
  for (const name of FILTERS) $(name).value = state[name];
  for (const name of ["weak", "noverify", "nocrop"]) $(name).checked = state[name];
  $("more").open ||= Boolean(state.min_score || state.factory_attributes || state.noverify || state.nocrop);
  const chosen = [...FILTERS, "weak", "noverify", "nocrop"].filter((name) => state[name]).length;
  $("filters-open").textContent = chosen ? `Filters (${chosen})` : "Filters";
}

// --- photos ---------------------------------------------------------------------------------------------
function savePhotos() {
  try {
    sessionStorage.setItem(PHOTOS, JSON.stringify(views));
  } catch {
    /* too big for sessionStorage: a reload will ask for the photo again */
  }
}

function loadPhotos() {
  try {
    views = JSON.parse(sessionStorage.getItem(PHOTOS) || "[]");
  } catch {
    views = [];
  }
}

function checkFile(file) {
  if (!file.type.startsWith("image/")) return `${file.name || "That file"} is not an image: choose a JPEG, PNG or WebP photo.`;
  if (file.size > MAX_BYTES) return `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; photos up to ${MAX_BYTES / 1048576} MB are accepted.`;
  return null;
}

async function addPhoto(file, asView = false) {
  const problem = checkFile(file);
  if (problem) return showAlert(problem);
  hideAlert();
  const url = await new Promise((resolve) => { const reader = new FileReader(); reader.onload = () => resolve(reader.result); reader.readAsDataURL(file); });
  const view = { url, box: null, subjects: [] };
  if (asView && views.length < MAX_VIEWS) views.push(view);
  else views = [view];
  active = views.length - 1;
  writeState({ like: "", page: 1 });
  try {
    const found = await call("/api/v1/subjects", { method: "POST", body: form([["image", blobOf(url), "photo"]]) });
    // One product: the box shows it, but the whole photo is searched (the server tries its own crops, and a
    // tight crop loses the context a catalogue photo has). Several: the largest is searched until another is picked.
    view.subjects = found.boxes;
    view.box = found.boxes.length > 1 ? found.boxes[0] : null;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 0) return fail(error);
  }
  savePhotos();
  showPhoto();
  search();
}

function addUrl(address) {
  let parsed;
  try {
    parsed = new URL(address);
  } catch {
    return showAlert("That is not a web address: give one starting with https://");
  }
  if (!["http:", "https:"].includes(parsed.protocol)) return showAlert("Give an http(s) web address of an image.");
  hideAlert();
  // The server fetches it (this page cannot read another site's image); it is searched as it is, no crop box.
  views = [{ url: null, remote: parsed.href, box: null, subjects: [] }];
  $("image-url").value = "";
  active = 0;
  writeState({ like: "", page: 1 });
  savePhotos();
  showPhoto();
  search();
}

function showPhoto() {
  const has = views.length > 0;
  watcher.offer(has && !views[active].remote, readState().text);
  $("photo").hidden = !has;
  $("drop").hidden = has;
  $("by-url").hidden = has;
  if (!has) return crop.set(null);
  const view = views[active];
  $("remote").hidden = !view.remote;
  $("stage").hidden = Boolean(view.remote);
  $("remote").textContent = view.remote ? `Image at ${view.remote}` : "";
  $("add-view-label").hidden = Boolean(view.remote);
  if (view.remote) return crop.set(null);
  $("preview").src = view.url;
  crop.set(view.box || view.subjects[0] || [0, 0, 1, 1]);
  $("each").hidden = !(views.length === 1 && view.subjects.length > 1);
  $("each").textContent = readState().each ? "Answer the chosen product only" : "Answer each product";
  $("subjects").replaceChildren(...(view.subjects.length > 1 ? view.subjects.map((box, i) => el("button", {
    type: "button", class: "chip", "aria-pressed": String(same(box, view.box)),
    onclick: () => { view.box = box; savePhotos(); showPhoto(); search(); },
  }, `Product ${i + 1}`)) : []));
  $("views").replaceChildren(...views.map((v, i) => el("span", { class: `view${i === active ? " active" : ""}` },
    el("button", { type: "button", class: "thumb", "aria-label": `View ${i + 1}`, onclick: () => { active = i; showPhoto(); } }, el("img", { src: v.url, alt: "" })),
    views.length > 1 ? el("button", { type: "button", class: "remove", "aria-label": `Remove view ${i + 1}`, onclick: () => removeView(i) }, "×") : null)));
  $("add-view-label").hidden = views.length >= MAX_VIEWS;
}

function searchForm(state, fields, wholePhotos = false) {
  // Uploaded views first, then those the server fetches: the server numbers bbox values in that order.
  const local = views.filter((v) => !v.remote);
  const remote = views.filter((v) => v.remote);
  const entries = local.map((v, i) => ["image", blobOf(v.url), `view${i + 1}.jpg`]);
  entries.push(...remote.map((v) => ["image_url", v.remote]));
  if (!wholePhotos) entries.push(...[...local, ...remote].map((v) => ["bbox", v.box ? v.box.map((x) => x.toFixed(4)).join(",") : ""]));
  for (const [name, value] of Object.entries({ ...fields, text: state.text })) if (value) entries.push([name, String(value)]);
  return form(entries);
}

const same = (a, b) => a && b && a.every((v, i) => Math.abs(v - b[i]) < 1e-6);

function removeView(index) {
  views.splice(index, 1);
  active = Math.min(active, views.length - 1);
  savePhotos();
  showPhoto();
  search();
}

function blobOf(dataUrl) {
  const [head, data] = dataUrl.split(",");
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5, head.indexOf(";")) });
}

function form(entries) {
  const body = new FormData();
  for (const [name, value, filename] of entries) body.append(name, value, ...(filename ? [filename] : []));
  return body;
}

// --- searching ------------------------------------------------------------------------------------------
let timer = null;
function scheduleSearch() {
  savePhotos();
  clearTimeout(timer);
  timer = setTimeout(search, 250);
}

async function search() {
  const state = readState();
  if (state.factory) return;
  if (!views.length && !state.like && !state.text) {
    $("cards").replaceChildren();
    $("pager").hidden = true;
    $("banner").hidden = true;
    return setStatus(FILTERS.some((name) => state[name]) ? "Add a photo to search with these filters." : "");
  }
  if (coolDown) return;
  if (inFlight) inFlight.abort();
  const controller = (inFlight = new AbortController());
  const filters = { region: state.region, category: state.category, min_price: state.min_price, max_price: state.max_price, max_moq: state.max_moq, min_score: state.min_score, factory_attributes: state.factory_attributes };
  const paging = { top_k: state.per, offset: (state.page - 1) * state.per, include_weak: state.weak ? "true" : "", verify: state.noverify ? "false" : "", auto_crop: state.nocrop ? "false" : "" };
  const each = state.each && !state.like && views.length === 1 && !views[0].remote && views[0].subjects.length > 1;
  $("go").disabled = true;
  $("go").textContent = "Searching…";
  $("cards").replaceChildren(...skeleton());
  $("banner").hidden = true;
  setStatus("Searching…");
  try {
    let body;
    if (state.like) {
      body = await call(`/api/v1/images/${encodeURIComponent(state.like)}/similar?${query({ ...filters, ...paging })}`, { signal: controller.signal });
    } else {
      const fields = { ...filters, ...paging, per_subject: each ? "true" : "" };
      body = await call("/api/v1/search", { method: "POST", body: searchForm(state, fields, each), signal: controller.signal });
    }
    hideAlert();
    show(body, state);
  } catch (error) {
    if (error.name !== "AbortError") fail(error);
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      $("go").disabled = Boolean(coolDown);
      $("go").textContent = "Search";
    }
  }
}

function show(body, state) {
  const actions = { similar: (id) => navigate({ like: String(id), page: 1 }), factory: (id) => navigate({ factory: id }), showWeak: () => navigate({ weak: true }) };
  const first = body.offset + 1;
  const last = body.offset + body.factories.length;
  const likely = body.categories && body.categories.length ? ` Probably ${body.categories.map((c) => `${c.category} (${Math.round(c.confidence * 100)}%)`).join(", ")}.` : "";
  $("banner").hidden = true;
  if (body.subjects) return showSubjects(body, state, actions, likely);
  if (!body.factories.length) {
    $("cards").replaceChildren();
    $("pager").hidden = true;
    if (!body.confident_match && !state.weak && body.total === 0 && !state.like) {
      $("banner").replaceChildren(noMatch(body, actions));
      $("banner").hidden = false;
      return setStatus(`No confident match.${likely}`);
    }
    return setStatus(body.message || "No factories found.");
  }
  const confident = body.factories.filter((f) => f.confident).length;
  const what = state.like ? "Factories with products like that image" : "Factories";
  setStatus(`${what} ${first}–${last} of ${body.total}${confident ? `, ${confident} with a confident match` : ""} (${Math.round(body.took_ms)} ms).${likely}`);
  $("cards").replaceChildren(...body.factories.map((factory, i) => factoryCard(factory, first + i, state.weak, actions)));
  pager(body, state);
}

function showSubjects(body, state, actions, likely) {
  // A photo of several products: a section per product, each with its own best factories (no paging).
  $("pager").hidden = true;
  setStatus(`${body.subjects.length} products in the photo, each answered on its own (${Math.round(body.took_ms)} ms).${likely}`);
  $("cards").replaceChildren(...body.subjects.map((subject, i) => el("section", { class: "subject", "data-subject": i + 1 },
    el("h2", {}, `Product ${i + 1}`, subject.answer.factories.length ? "" : ": no confident match"),
    ...subject.answer.factories.map((factory, rank) => factoryCard(factory, rank + 1, state.weak, actions)))));
}

function pager(body, state) {
  const pages = Math.ceil(body.total / state.per);
  $("pager").hidden = pages < 2;
  if (pages < 2) return;
  const go = (page) => navigate({ page });
  $("pager").replaceChildren(
    el("button", { type: "button", id: "prev", disabled: state.page <= 1, onclick: () => go(state.page - 1) }, "‹ Previous"),
    el("span", {}, ` Page ${state.page} of ${pages} `),
    el("button", { type: "button", id: "next", disabled: state.page >= pages, onclick: () => go(state.page + 1) }, "Next ›"));
}

function navigate(changes) {
  writeState(changes);
  route();
  window.scrollTo(0, 0);
}

// --- messages -------------------------------------------------------------------------------------------
function setStatus(text) { $("status").textContent = text; }
function hideAlert() { $("alert").hidden = true; }

function showAlert(text, retry = false) {
  const parts = [el("span", {}, text)];
  if (retry) parts.push(el("button", { type: "button", id: "retry", onclick: search }, "Retry"));
  $("alert").replaceChildren(...parts);
  $("alert").hidden = false;
}

function fail(error) {
  $("cards").replaceChildren();
  setStatus("");
  if (error.status === 401 || error.status === 403) $("key-box").open = true;
  if (error.status === 429) return countDown(error.retryAfter || 30);
  showAlert(error.message, error.status === 0 || error.status >= 500);
}

function countDown(seconds) {
  clearInterval(coolDown);
  let left = seconds;
  const tick = () => {
    if (left <= 0) {
      clearInterval(coolDown);
      coolDown = null;
      $("go").disabled = false;
      return hideAlert();
    }
    showAlert(`Too many searches: try again in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}.`);
    $("go").disabled = true;
    left -= 1;
  };
  coolDown = setInterval(tick, 1000);
  tick();
}

// --- the factory page -----------------------------------------------------------------------------------
async function showFactory(id) {
  $("search-view").hidden = true;
  $("factory-view").hidden = false;
  $("factory").replaceChildren(el("p", {}, "Loading…"));
  try {
    const [factory, products] = await Promise.all([
      call(`/api/v1/factories/${encodeURIComponent(id)}`),
      call(`/api/v1/products?${query({ factory_id: id, limit: 500 })}`),
    ]);
    $("factory").replaceChildren(factoryPage(factory, products));
    document.title = `${factory.name} — SourceLens`;
  } catch (error) {
    $("factory").replaceChildren(el("p", { role: "alert" }, error.message));
  }
}

function openSheet(open) {
  if (document.body.classList.contains("sheet-open") === open) return;
  document.body.classList.toggle("sheet-open", open);
  $("filters-open").setAttribute("aria-expanded", String(open));
  (open ? $("filters-close") : $("filters-open")).focus();
}

// --- wiring ---------------------------------------------------------------------------------------------
async function loadFacets() {
  try {
    const facets = await call("/api/v1/facets");
    for (const [name, values] of [["region", facets.regions], ["category", facets.categories]]) {
      const chosen = readState()[name];
      $(name).replaceChildren(el("option", { value: "" }, "Any"), ...values.map((v) => el("option", { value: v.value }, `${v.value} (${v.products})`)));
      $(name).value = chosen;
    }
    if (facets.max_price !== null) $("max_price").placeholder = `up to ${facets.max_price}`;
    if (facets.max_moq !== null) $("max_moq").placeholder = `up to ${facets.max_moq}`;
  } catch (error) {
    if (error.status === 401 || error.status === 403) $("key-box").open = true;
  }
}

function route() {
  const state = readState();
  formFromState(state);
  if (state.factory) return showFactory(state.factory);
  $("search-view").hidden = false;
  $("factory-view").hidden = true;
  document.title = "SourceLens — find the factory behind a product photo";
  search();
}

$("by-url").addEventListener("submit", (e) => { e.preventDefault(); if ($("image-url").value.trim()) addUrl($("image-url").value.trim()); });
$("file").addEventListener("change", (e) => e.target.files[0] && addPhoto(e.target.files[0]));
$("camera").addEventListener("change", (e) => e.target.files[0] && addPhoto(e.target.files[0]));
$("add-view").addEventListener("change", (e) => e.target.files[0] && addPhoto(e.target.files[0], true));
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const file = e.dataTransfer && e.dataTransfer.files[0];
  if (file) addPhoto(file);
});
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === "file");
  if (item) addPhoto(item.getAsFile());
});
$("each").addEventListener("click", () => { navigate({ each: !readState().each, page: 1 }); showPhoto(); });
$("whole").addEventListener("click", () => { views[active].box = null; savePhotos(); showPhoto(); search(); });
$("clear").addEventListener("click", () => { views = []; savePhotos(); showPhoto(); writeState({ like: "", page: 1 }); search(); });
$("filters").addEventListener("submit", (e) => { e.preventDefault(); openSheet(false); navigate({ ...filtersFromForm(), like: readState().like, page: 1 }); });
$("filters").addEventListener("change", (e) => { if (e.target.id !== "text") navigate({ ...filtersFromForm(), page: 1 }); });
$("back").addEventListener("click", (e) => { e.preventDefault(); if (history.length > 1) history.back(); else navigate({ factory: "" }); });
$("key").value = storedKey();
$("key").addEventListener("change", () => { storeKey($("key").value.trim()); loadFacets(); watcher.refresh(); search(); });
$("filters-open").addEventListener("click", () => openSheet(true));
$("filters-close").addEventListener("click", () => openSheet(false));
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && document.body.classList.contains("sheet-open")) openSheet(false); });
window.addEventListener("popstate", route);

loadPhotos();
active = Math.max(0, views.length - 1);
showPhoto();
loadFacets();
watcher.refresh();
route();
