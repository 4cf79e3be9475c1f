// Factory cards, the no-match banner and the factory page: what a buyer can act on, in words, not raw scores.
export const ICONS = { identical: "✓", near_duplicate: "≈", shares_part: "◐", similar: "∼" };
const CONTACT_KEYS = ["contact", "phone", "whatsapp", "wechat", "email", "website"];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function level(match, weak) {
  const words = weak && !match.confident ? "weak match" : match.match_words;
  return el("span", { class: `level ${match.match_level}` }, `${ICONS[match.match_level] || ""} ${words}`);
}

export function evidenceText(match) {
  const parts = [`${Math.round(match.similarity * 100)}% similar`];
  const e = match.evidence;
  if (e && e.inliers) parts.push(`${e.inliers} matching points`);
  if (e && e.region) parts.push("matched area outlined");
  if (e && e.mirrored) parts.push("mirrored");
  return parts.join(" · ");
}

export function contacts(attributes) {
  const found = CONTACT_KEYS.filter((key) => typeof attributes[key] === "string" && attributes[key]);
  if (!found.length) return null;
  return el("p", { class: "contact" }, ...found.map((key) => {
    const value = attributes[key];
    const href = key === "email" ? `mailto:${value}` : key === "website" && /^https?:\/\//.test(value) ? value : null;
    return el("span", {}, `${key}: `, href ? el("a", { href, rel: "noopener" }, value) : value, " ");
  }));
}

export function productFacts(product) {
  const facts = [];
  if (product.price !== null && product.price !== undefined) facts.push(`price ${product.price}`);
  if (product.moq) facts.push(`MOQ ${product.moq}`);
  if (product.category) facts.push(product.category);
  return facts.join(" · ");
}

function matchFigure(match, actions) {
  const picture = el("div", { class: "picture" }, el("img", { src: match.image_url, alt: match.title, loading: "lazy" }));
  const region = match.evidence && match.evidence.region;
  if (region) {
    const [x0, y0, x1, y1] = region;
    const outline = el("span", { class: "outline", title: "where it matched" });
    Object.assign(outline.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%` });
    picture.append(outline);
  }
  return el("figure", { class: "match", "data-image": match.image_id },
    picture,
    el("figcaption", {},
      el("b", {}, match.title), el("br"),
      el("span", { class: "facts" }, productFacts(match)), el("br"),
      level(match), el("br"),
      el("span", { class: "evidence" }, evidenceText(match)), el("br"),
      el("button", { type: "button", class: "similar", onclick: () => actions.similar(match.image_id) }, "Find similar")));
}

export function factoryCard(factory, rank, weak, actions) {
  return el("article", { class: `card${factory.confident ? "" : " weak"}`, "data-factory": factory.factory_id },
    el("h2", {}, el("span", { class: "rank" }, `${rank}.`), " ",
      el("a", { href: `?factory=${encodeURIComponent(factory.factory_id)}`, class: "factory-link",
        onclick: (event) => { event.preventDefault(); actions.factory(factory.factory_id); } }, factory.name)),
    el("p", { class: "meta" }, level(factory.matches[0] ? { ...factory.matches[0], confident: factory.confident } : factory, weak), " ",
      `${factory.region || "region not given"} · ${factory.matches.length} matching product${factory.matches.length === 1 ? "" : "s"}`),
    contacts(factory.attributes || {}),
    el("div", { class: "matches" }, ...factory.matches.map((match) => matchFigure(match, actions))));
}

export function skeleton(count = 3) {
  return Array.from({ length: count }, () => el("article", { class: "card skeleton", "aria-hidden": "true" }, el("div"), el("div"), el("div")));
}

export function noMatch(body, actions) {
  return el("div", { class: "banner" },
    el("h2", {}, "No confident match"),
    el("p", {}, "No catalogue image is the same product as your photo, or very like it."),
    el("ul", {},
      el("li", {}, "Move the search area onto the product alone, or pick another product in the photo."),
      el("li", {}, "Add another view of the product (another angle, the label, the packaging)."),
      el("li", {}, "Clear some filters: they may leave out the factory that makes it.")),
    el("button", { type: "button", id: "show-weak", onclick: actions.showWeak }, "Show weak matches"));
}

export function factoryPage(factory, products) {
  return el("section", { class: "factory-page" },
    el("h1", {}, factory.name),
    el("p", { class: "meta" }, `${factory.region || "region not given"} · ${factory.product_count} products`),
    contacts(factory.attributes || {}),
    el("div", { class: "catalogue" }, ...products.map((product) => el("figure", { class: "product", "data-product": product.id },
      product.image_ids.length ? el("img", { src: `/api/v1/images/${product.image_ids[0]}/file`, alt: product.title, loading: "lazy" }) : el("div", { class: "noimage" }, "no image"),
      el("figcaption", {}, el("b", {}, product.title), el("br"), productFacts(product))))));
}
