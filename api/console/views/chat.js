// The assistant: conversations (GET /chat/sessions) and an answer streamed from POST /assistant/chat (SSE):
// `thinking` and tool steps fold into a disclosure, `content` deltas build the answer, `citation` frames become
// buttons that open the cited file at its page.
import * as api from "../api.js";
import { announce, field, fmtDate, fmtSeconds, h, replace, showError } from "../ui.js";

export function chatView(ctx) {
  const sessions = h("ul", { class: "pick-list", "aria-label": "Conversations" });
  const log = h("div", { class: "chat-log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  const message = h("textarea", { rows: 3, required: true, maxlength: 100000 });
  const scope = h("select", {}, h("option", { value: "" }, "All knowledge bases"));
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", hidden: true, onclick: () => controller?.abort() }, "Stop");
  const form = h("form", { class: "composer", onsubmit: ask },
    field("Message", message, "Enter sends, Shift+Enter starts a new line."),
    h("div", { class: "row" }, field("Search in", scope), h("div", { class: "buttons" }, send, stop)));
  const el = h("section", { class: "view", hidden: true, "aria-labelledby": "chat-title" },
    h("h1", { id: "chat-title", tabindex: -1 }, "Assistant"),
    h("div", { class: "split" },
      h("div", { class: "side" },
        h("h2", {}, "Conversations"),
        h("button", { type: "button", onclick: newConversation }, "New conversation"),
        sessions),
      h("div", { class: "chat" }, log, form)));

  let sessionId = null; // the conversation the next message continues (null: a new one)
  let controller = null;

  message.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  async function loadSessions() {
    try {
      const result = await api.get("/chat/sessions", { limit: 50 });
      replace(sessions, result.data.length ? result.data.map((s) => h("li", {},
        h("button", { type: "button", class: "pick", "aria-current": s.session_id === sessionId ? "true" : null,
                      onclick: () => openSession(s) },
          h("span", { class: "pick-name" }, s.title || "Conversation"),
          h("span", { class: "muted" }, fmtDate(s.updated_at)))))
        : h("li", { class: "muted" }, "No conversations yet."));
    } catch (err) { showError(err, sessions); }
  }

  async function loadScopes() {
    try {
      const kbs = await ctx.knowledgeBases();
      const chosen = scope.value;
      replace(scope, h("option", { value: "" }, "All knowledge bases"),
        kbs.map((kb) => h("option", { value: kb.id, selected: kb.id === chosen }, kb.name)));
    } catch (err) { showError(err); }
  }

  function newConversation() {
    controller?.abort();
    sessionId = null;
    replace(log);
    loadSessions();
    message.focus();
  }

  async function openSession(session) {
    controller?.abort();
    sessionId = session.session_id;
    loadSessions();
    try {
      const history = await api.get(`/chat/sessions/${api.enc(session.id)}/messages`, { limit: 100 });
      replace(log, history.data.map((m) => m.role === "user" ? userBubble(m.content) : answerBubble(m.content, m.citations)));
      log.lastElementChild?.scrollIntoView({ block: "end" });
    } catch (err) { showError(err, log); }
  }

  function userBubble(text) {
    return h("article", { class: "msg msg-user", "aria-label": "You" }, h("p", {}, text));
  }

  /** A finished answer: text with its [n] markers as buttons, and the list of sources. */
  function answerBubble(text, citations) {
    const bubble = h("article", { class: "msg msg-assistant", "aria-label": "Assistant" });
    const answer = h("div", { class: "answer" });
    const sources = h("ol", { class: "sources", "aria-label": "Sources" });
    bubble.append(answer, sources);
    for (const c of citations || []) sources.append(sourceItem(c));
    finishAnswer(answer, text, citations || []);
    return bubble;
  }

  function citationButton(c, label) {
    const page = c.page ? `, page ${c.page}` : "";
    return h("button", { type: "button", class: "cite", title: c.quote || "",
                         "aria-label": `Source ${c.index}: ${c.file_name}${page}`,
                         onclick: () => ctx.openCitation(c.file_id, c.file_name, c.page) }, label);
  }

  function sourceItem(c) {
    const page = c.page ? `, page ${c.page}` : "";
    return h("li", { value: c.index },
      citationButton(c, `${c.file_name}${page}`),
      c.quote ? h("blockquote", {}, c.quote) : null);
  }

  function finishAnswer(answer, text, citations) {
    const byIndex = new Map(citations.map((c) => [c.index, c]));
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      const c = byIndex.get(Number(match[1]));
      if (!c) continue;
      parts.push(text.slice(last, match.index), citationButton(c, match[0]));
      last = match.index + match[0].length;
    }
    parts.push(text.slice(last));
    replace(answer, parts);
  }

  async function ask(event) {
    event.preventDefault();
    const text = message.value.trim();
    if (!text || controller) return;
    message.value = "";
    log.append(userBubble(text));
    const bubble = h("article", { class: "msg msg-assistant", "aria-label": "Assistant", "aria-busy": "true" });
    const thinking = h("details", { class: "thinking", hidden: true }, h("summary", {}, "Thinking…"));
    const thoughts = h("div", { class: "thoughts" });
    thinking.append(thoughts);
    const answer = h("div", { class: "answer" });
    const sources = h("ol", { class: "sources", "aria-label": "Sources" });
    const meta = h("p", { class: "muted small" });
    bubble.append(thinking, answer, sources, meta);
    log.append(bubble);
    let content = "";
    const citations = [];
    const body = { message: text };
    if (sessionId) body.session_id = sessionId;
    if (scope.value) body.kb_ids = [scope.value];
    controller = new AbortController();
    send.disabled = true;
    stop.hidden = false;
    const onEvent = ({ event: type, data }) => {
      if (type === "execution" || type === "session") {
        if (data.session_id) sessionId = data.session_id;
      } else if (type === "thinking") {
        thinking.hidden = false;
        const lastThought = thoughts.lastElementChild;
        if (lastThought && lastThought.classList.contains("thought")) lastThought.textContent += data.content;
        else thoughts.append(h("p", { class: "thought" }, data.content));
      } else if (type === "tool_start") {
        thinking.hidden = false;
        thoughts.append(h("p", { class: "tool" }, `Tool ${data.name} started`));
      } else if (type === "tool_end") {
        thoughts.append(h("p", { class: data.is_error ? "tool error" : "tool" }, `Tool ${data.name}: ${data.summary || "done"}`));
      } else if (type === "content") {
        content += data.content;
        answer.textContent = content;
      } else if (type === "citation") {
        citations.push(data);
        sources.append(sourceItem(data));
      } else if (type === "done") {
        const usage = data.token_usage || {};
        meta.textContent = fmtSeconds(data.time) + (usage.total ? ` · ${usage.total} tokens` : "");
      } else if (type === "error") {
        bubble.append(h("p", { class: "error", role: "alert" }, `${data.message} (${data.code})`));
      }
      log.scrollTop = log.scrollHeight;
    };
    try {
      await api.stream("POST", "/assistant/chat", { json: body, signal: controller.signal, onEvent });
    } catch (err) {
      if (err.name === "AbortError") bubble.append(h("p", { class: "muted" }, "Stopped."));
      else bubble.append(h("p", { class: "error", role: "alert" }, err.message));
    } finally {
      controller = null;
      send.disabled = false;
      stop.hidden = true;
      finishAnswer(answer, content, citations);
      thinking.querySelector("summary").textContent = "Reasoning and tool steps";
      bubble.setAttribute("aria-busy", "false");
      const n = citations.length;
      announce(n ? `Answer ready with ${n} source${n === 1 ? "" : "s"}.` : "Answer ready.");
      loadSessions();
    }
  }

  return {
    el,
    show() { el.hidden = false; loadSessions(); loadScopes(); },
    hide() { el.hidden = true; },
  };
}
