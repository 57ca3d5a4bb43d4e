// API tokens: create one (its secret is shown once, here), list the ones you may manage, revoke.
import * as api from "../api.js";
import { announce, busy, confirmed, field, fmtDate, h, pager, replace, showError, statusBadge } from "../ui.js";

const ROLES = ["viewer", "editor", "admin"]; // weakest first: a token is never stronger than its maker

export function tokensView(ctx) {
  const name = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const role = h("select", {},
    h("option", { value: "" }, `Same as mine (${ctx.me.role})`),
    ROLES.slice(0, ROLES.indexOf(ctx.me.role) + 1).map((r) => h("option", { value: r }, r)));
  const days = h("input", { type: "number", min: 1, max: 3650, placeholder: "never" });
  const issued = h("div", { class: "issued", "aria-live": "polite" });
  const table = h("div", { class: "tokens" });
  const el = h("section", { class: "view", hidden: true, "aria-labelledby": "tokens-title" },
    h("h1", { id: "tokens-title", tabindex: -1 }, "API tokens"),
    h("form", { class: "card", onsubmit: create },
      h("h2", {}, "New token"),
      h("div", { class: "row" }, field("Name", name), field("Role", role, "Never stronger than your own."),
        field("Expires after (days)", days, "Empty: never.")),
      h("button", { type: "submit", class: "primary" }, "Create token")),
    issued, table);

  let page = 1;

  async function create(event) {
    event.preventDefault();
    const body = { name: name.value.trim() };
    if (role.value) body.role = role.value;
    if (days.value) body.expires_in_days = Number(days.value);
    await busy(event.submitter, async () => {
      try {
        const token = (await api.post("/tokens", body)).data;
        name.value = days.value = "";
        showSecret(token);
        await load();
      } catch (err) { showError(err); }
    });
  }

  function showSecret(token) {
    const secret = h("input", { readonly: true, value: token.secret, spellcheck: false, class: "secret" });
    const copy = h("button", { type: "button", onclick: async () => {
      secret.select();
      try { await navigator.clipboard.writeText(token.secret); announce("Token copied."); }
      catch { announce("Press Ctrl+C (⌘C) to copy the selected token."); }
    } }, "Copy");
    replace(issued, h("div", { class: "card notice", role: "region", "aria-label": "New token secret" },
      h("p", {}, h("strong", {}, `Token “${token.name}” created. `), "Copy its secret now: it is not shown again."),
      h("div", { class: "row" }, field("Secret", secret), copy),
      h("button", { type: "button", class: "link", onclick: () => replace(issued) }, "I have stored it")));
    secret.focus();
    secret.select();
  }

  function state(token) {
    if (token.revoked_at) return statusBadge("revoked");
    if (token.expires_at && token.expires_at * 1000 < Date.now()) return statusBadge("expired");
    return statusBadge("active");
  }

  async function load() {
    let result;
    try { result = await api.get("/tokens", { page, limit: 20 }); } catch (err) { return showError(err, table); }
    const current = ctx.me.token?.id;
    replace(table, h("div", { class: "table-wrap" }, h("table", {},
      h("caption", {}, `Tokens (${result.pagination.total})`),
      h("thead", {}, h("tr", {}, ["Name", "Prefix", "Role", "Created", "Expires", "Last used", "State", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, result.data.map((t) => h("tr", {},
        h("th", { scope: "row" }, t.name, t.id === current ? h("span", { class: "muted" }, " (this session)") : null),
        h("td", {}, h("code", {}, `${t.prefix}…`)),
        h("td", {}, t.role || "inherits"),
        h("td", {}, fmtDate(t.created_at)),
        h("td", {}, t.expires_at ? fmtDate(t.expires_at) : "never"),
        h("td", {}, fmtDate(t.last_used_at)),
        h("td", {}, state(t)),
        h("td", {}, t.active && !t.revoked_at
          ? h("button", { type: "button", class: "danger", "aria-label": `Revoke ${t.name}`, onclick: (e) => revoke(e, t) }, "Revoke")
          : null)))))),
      pager(result.pagination, (p) => { page = p; load(); }));
  }

  async function revoke(event, token) {
    const own = token.id === ctx.me.token?.id ? " This is the token this console uses: you will be signed out." : "";
    if (!confirmed(`Revoke the token “${token.name}”? Programs using it stop working at once.${own}`)) return;
    await busy(event.currentTarget, async () => {
      try {
        await api.post(`/tokens/${api.enc(token.id)}/revoke`);
        announce(`Token ${token.name} revoked.`);
        await load();
      } catch (err) { showError(err); }
    });
  }

  return {
    el,
    show() { el.hidden = false; load(); },
    hide() { el.hidden = true; },
  };
}
