// Saved searches on the seller page: "tell me when a new factory matches" saves the chosen product (the photo
// cut to its search area) under a name, with an optional webhook; the watched list shows what new catalogue
// images matched each, at a confident level, and stops watching on request. They need an API key.
import { ApiError, call, storedKey } from "./api.js";
import { ICONS, el } from "./results.js";

const WORDS = { identical: "same product", near_duplicate: "very similar", shares_part: "shares a part", similar: "looks alike" };
const $ = (id) => document.getElementById(id);

export class Watcher {
  // photo(): the product to watch as {url (data URL), box ([x0,y0,x1,y1] fractions or null)}, or null.
  // openFactory(id): show a factory's page. explain(error): show an error the way the page does.
  constructor({ photo, openFactory, explain }) {
    Object.assign(this, { photo, openFactory, explain });
    $("watch-open").addEventListener("click", () => this.openForm());
    $("watch-form").addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
    $("watch-cancel").addEventListener("click", () => { $("watch-form").hidden = true; $("watch-open").hidden = false; });
  }

  // Offered only for a photo on this device (a photo by web address has no bytes here to save).
  offer(available, suggestedName) {
    $("watch").hidden = !available;
    if (!available) $("watch-form").hidden = true;
    if (suggestedName && !$("watch-name").value) $("watch-name").value = suggestedName;
  }

  openForm() {
    $("watch-form").hidden = false;
    $("watch-open").hidden = true;
    $("watch-status").textContent = "";
    if (!$("watch-name").value) $("watch-name").value = "My product";
    $("watch-name").focus();
  }

  async save() {
    const chosen = this.photo();
    if (!chosen) return;
    if (!storedKey()) return this.explain(new ApiError(401, "Watching a product needs an API key: enter yours under “API key”."));
    const body = new FormData();
    body.append("image", await cropped(chosen.url, chosen.box), "watched.jpg");
    body.append("name", $("watch-name").value.trim() || "My product");
    if ($("watch-webhook").value.trim()) body.append("webhook_url", $("watch-webhook").value.trim());
    try {
      const saved = await call("/api/v1/saved-searches", { method: "POST", body });
      $("watch-form").hidden = true;
      $("watch-open").hidden = false;
      $("watch-status").textContent = `Watching “${saved.name}”: new factories that match appear under Watched products.`;
      this.refresh();
    } catch (error) {
      $("watch-status").textContent = error.message;
      if (error instanceof ApiError && [401, 403].includes(error.status)) this.explain(error);
    }
  }

  async refresh() {
    if (!storedKey()) return void ($("watched").hidden = true);
    let saved;
    try {
      saved = await call("/api/v1/saved-searches");
    } catch {
      $("watched").hidden = true; // no key yet, or a key that may not: nothing to list
      return;
    }
    $("watched").hidden = saved.length === 0;
    $("watched-count").textContent = saved.length ? ` (${saved.length})` : "";
    $("watched-list").replaceChildren(...saved.map((s) => this.item(s)));
  }

  item(saved) {
    const matches = el("ul", { class: "watched-matches" });
    const show = el("button", { type: "button", class: "show-matches", onclick: () => this.showMatches(saved, matches) },
      saved.matches ? `${saved.matches} new match${saved.matches === 1 ? "" : "es"}` : "No new match yet");
    show.disabled = !saved.matches;
    const stop = el("button", { type: "button", class: "stop", onclick: () => this.stop(saved) }, "Stop watching");
    return el("li", { "data-saved": saved.id }, el("strong", {}, saved.name), el("div", { class: "row" }, show, stop), matches);
  }

  async showMatches(saved, list) {
    try {
      const found = await call(`/api/v1/saved-searches/${saved.id}/matches`);
      list.replaceChildren(...found.map((m) => el("li", {},
        el("a", { href: `?factory=${encodeURIComponent(m.factory_id)}`, onclick: (e) => { e.preventDefault(); this.openFactory(m.factory_id); } }, m.factory_id),
        ` · ${m.product_id} · ${ICONS[m.match_level] || ""} ${WORDS[m.match_level] || m.match_level} (${Math.round(m.similarity * 100)}%)`)));
    } catch (error) {
      list.replaceChildren(el("li", { role: "alert" }, error.message));
    }
  }

  async stop(saved) {
    try {
      await call(`/api/v1/saved-searches/${saved.id}`, { method: "DELETE" });
    } catch (error) {
      $("watch-status").textContent = error.message;
    }
    this.refresh();
  }
}

// The photo cut to the chosen search area, as a JPEG: what is watched is the product the seller picked.
async function cropped(url, box) {
  const image = new Image();
  image.src = url;
  await image.decode();
  const [x0, y0, x1, y1] = box || [0, 0, 1, 1];
  const width = Math.max(1, Math.round((x1 - x0) * image.naturalWidth));
  const height = Math.max(1, Math.round((y1 - y0) * image.naturalHeight));
  const canvas = Object.assign(document.createElement("canvas"), { width, height });
  canvas.getContext("2d").drawImage(image, -x0 * image.naturalWidth, -y0 * image.naturalHeight);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}
