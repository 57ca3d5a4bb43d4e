// Ragline console: sign-in, the section router (#/knowledge, #/search, #/chat, #/agents, #/tokens) and the
// context the views share. No framework, no build step: ES modules served as they are.
import * as api from "./api.js";
import { announce, h, replace } from "./ui.js";
import { knowledgeView } from "./views/knowledge.js";
import { searchView } from "./views/search.js";
import { chatView } from "./views/chat.js";
import { agentsView } from "./views/agents.js";
import { tokensView } from "./views/tokens.js";

const FACTORIES = { knowledge: knowledgeView, search: searchView, chat: chatView, agents: agentsView, tokens: tokensView };
const TITLES = { knowledge: "Knowledge", search: "Search", chat: "Assistant", agents: "Agents", tokens: "Tokens" };
const $ = (id) => document.getElementById(id);

let views = {};
let current = null;

/** What every view shares: who is signed in, the knowledge bases, and where a file lives (citations carry no kb). */
function makeContext(me) {
  const fileKb = new Map();
  let kbCache = null;
  const ctx = {
    me,
    canEdit: me.role === "editor" || me.role === "admin",
    async knowledgeBases(refresh = false) {
      if (!kbCache || refresh) {
        kbCache = api.get("/knowledge-bases", { limit: 100 }).then((r) => r.data).catch((err) => { kbCache = null; throw err; });
      }
      return kbCache;
    },
    rememberFile(fileId, kbId) { fileKb.set(fileId, kbId); },
    async kbOfFile(fileId) {
      if (fileKb.has(fileId)) return fileKb.get(fileId);
      for (const kb of await ctx.knowledgeBases()) {
        try {
          await api.get(`/knowledge-bases/${api.enc(kb.id)}/files/${api.enc(fileId)}`);
          fileKb.set(fileId, kb.id);
          return kb.id;
        } catch (err) {
          if (err.status !== 404) throw err;
        }
      }
      throw new Error("that file is no longer in any knowledge base you can see");
    },
    /** Open a cited file at its page (in a new tab; PDFs at #page=N). */
    async openCitation(fileId, fileName, page) {
      try {
        await api.openFile(await ctx.kbOfFile(fileId), fileId, fileName, page);
      } catch (err) {
        announce(`Could not open ${fileName}: ${err.message}`, "error");
      }
    },
  };
  return ctx;
}

function showSignIn(reason = "") {
  for (const view of Object.values(views)) view.hide();
  views = {};
  current = null;
  replace($("views"));
  $("nav").hidden = true;
  $("account").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-reason").textContent = reason;
  document.title = "Sign in · Ragline console";
  $("login-username").focus();
}

async function start() {
  let me;
  try {
    me = (await api.get("/me")).data;
  } catch (err) {
    if (err.status === 401) api.auth.clear(); // anything else (server down): a reload tries the token again
    showSignIn(err.status === 401 ? "That token is not valid (expired or revoked)." : err.message);
    return;
  }
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("account").hidden = false;
  replace($("who"), h("strong", {}, me.user_name), ` · ${me.workspace_name} (${me.role})`);
  const ctx = makeContext(me);
  views = {};
  for (const [name, factory] of Object.entries(FACTORIES)) views[name] = factory(ctx);
  replace($("views"), Object.values(views).map((v) => v.el));
  route();
}

function route() {
  if (!Object.keys(views).length) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const next = views[name] ? name : "knowledge";
  if (current && current !== next) views[current].hide();
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === next) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const changed = current !== next;
  if (changed && current) $("status").textContent = ""; // a message belongs to the view that said it
  current = next;
  views[next].show();
  document.title = `${TITLES[next]} · Ragline console`;
  if (changed) views[next].el.querySelector("h1")?.focus({ preventScroll: false });
}

async function signOut() {
  if (api.auth.kind === "login") {
    try { await api.post("/logout"); } catch { /* already invalid: forget it anyway */ }
  }
  api.auth.clear();
  showSignIn("");
  announce("Signed out.");
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter || event.target.querySelector("button");
  button.disabled = true;
  try {
    const body = { username: $("login-username").value.trim(), password: $("login-password").value };
    const result = await api.post("/login", body);
    api.auth.set(result.data.token, "login");
    $("login-password").value = "";
    await start();
  } catch (err) {
    $("sign-in-reason").textContent = err.status === 401 ? "Wrong username or password." : err.message;
  } finally {
    button.disabled = false;
  }
});

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  api.auth.set($("token-input").value.trim(), "pasted");
  $("token-input").value = "";
  await start();
});

$("sign-out").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
api.auth.onUnauthorized(() => {
  if (!api.auth.token) return;
  api.auth.clear();
  showSignIn("Your session ended (the token expired or was revoked). Sign in again.");
});

if (api.auth.token) start();
else showSignIn();
