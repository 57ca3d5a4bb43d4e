// Search: dense, sparse (BM25) or hybrid over chosen knowledge bases and tags; each hit shows its file, page
// and the passage with the query's words highlighted. A hit's file opens at its page.
import * as api from "../api.js";
import { announce, busy, field, h, highlight, replace, showError, splitList } from "../ui.js";

export function searchView(ctx) {
  const query = h("input", { type: "search", required: true, maxlength: 2000, autocomplete: "off" });
  const mode = h("select", {},
    h("option", { value: "hybrid" }, "Hybrid (dense + BM25)"),
    h("option", { value: "dense" }, "Dense (meaning)"),
    h("option", { value: "sparse" }, "Sparse (BM25 keywords)"));
  const topK = h("input", { type: "number", min: 1, max: 100, value: "10" });
  const tags = h("input", { autocomplete: "off", placeholder: "hr, policies" });
  const kbBox = h("fieldset", { class: "checks" }, h("legend", {}, "Knowledge bases (none checked: all)"));
  const results = h("div", { class: "results" });
  const form = h("form", { class: "card search-form", onsubmit: run },
    h("div", { class: "row" }, field("Query", query), h("button", { type: "submit", class: "primary" }, "Search")),
    h("div", { class: "row" }, field("Mode", mode), field("Results", topK), field("Tags (comma-separated)", tags)),
    kbBox);
  const el = h("section", { class: "view", hidden: true, "aria-labelledby": "search-title" },
    h("h1", { id: "search-title", tabindex: -1 }, "Search"), form, results);

  async function loadKbs() {
    let kbs;
    try { kbs = await ctx.knowledgeBases(true); } catch (err) { return showError(err); }
    const checked = new Set([...kbBox.querySelectorAll("input:checked")].map((i) => i.value));
    kbBox.querySelectorAll("label").forEach((l) => l.remove());
    for (const kb of kbs) {
      kbBox.append(h("label", { class: "check" },
        h("input", { type: "checkbox", value: kb.id, checked: checked.has(kb.id) }), kb.name));
    }
    return kbs;
  }

  async function run(event) {
    event.preventDefault();
    const text = query.value.trim();
    if (!text) return;
    const kbIds = [...kbBox.querySelectorAll("input:checked")].map((i) => i.value);
    const body = { query: text, mode: mode.value, top_k: Number(topK.value) || 10 };
    if (kbIds.length) body.kb_ids = kbIds;
    const tagList = splitList(tags.value);
    if (tagList.length) body.tags = tagList;
    await busy(event.submitter, async () => {
      try {
        const [hits, kbs] = [(await api.post("/search", body)).data, await ctx.knowledgeBases()];
        render(text, hits, new Map(kbs.map((kb) => [kb.id, kb.name])));
      } catch (err) { showError(err, results); }
    });
  }

  function render(text, hits, kbNames) {
    announce(`${hits.length} result${hits.length === 1 ? "" : "s"} for “${text}”.`);
    if (!hits.length) return replace(results, h("p", { class: "muted" }, "No passage matches."));
    replace(results, h("h2", { class: "visually-hidden" }, "Results"), h("ol", { class: "hits" }, hits.map((hit) => {
      ctx.rememberFile(hit.file_id, hit.kb_id);
      const where = hit.page ? `page ${hit.page}` : "no page";
      return h("li", { class: "hit card" },
        h("div", { class: "hit-head" },
          h("button", { type: "button", class: "link", title: `Open ${hit.file_name} at ${where}`,
                        onclick: () => ctx.openCitation(hit.file_id, hit.file_name, hit.page) },
            hit.file_name),
          h("span", { class: "muted" }, where),
          h("span", { class: "muted" }, kbNames.get(hit.kb_id) || hit.kb_id),
          h("span", { class: "score", title: "relevance score" }, hit.score.toFixed(3))),
        hit.heading_path.length ? h("p", { class: "crumbs" }, hit.heading_path.join(" › ")) : null,
        h("p", { class: "passage" }, highlight(hit.text, text)),
        hit.tags.length ? h("p", { class: "tags" }, hit.tags.map((t) => h("span", { class: "tag" }, t))) : null);
    })));
  }

  return {
    el,
    show() { el.hidden = false; loadKbs(); },
    hide() { el.hidden = true; },
  };
}
