// Agents and their runs: list (and create), start a run streamed from POST /agents/{id}/run/stream and watch
// its live trace, cancel it, and look back at earlier runs (stored events; a running one is followed live).
import * as api from "../api.js";
import { announce, busy, field, fmtDate, fmtSeconds, h, replace, showError, statusBadge } from "../ui.js";

const TERMINAL = new Set(["done", "error"]);

function summary(type, data) {
  switch (type) {
    case "execution": return `run ${data.execution_id} · ${data.agent || "agent"} · ${data.model || ""}`;
    case "thinking": case "content": return data.content;
    case "tool_start": return `${data.name}(${JSON.stringify(data.arguments ?? {})})`;
    case "tool_end": return `${data.name}: ${data.summary || ""}${data.is_error ? " (error)" : ""}`;
    case "citation": return `[${data.index}] ${data.file_name}${data.page ? `, page ${data.page}` : ""}`;
    case "done": return `finished in ${fmtSeconds(data.time)}, ${data.token_usage?.total ?? 0} tokens`;
    case "error": return `${data.message} (${data.code})`;
    default: return JSON.stringify(data);
  }
}

export function agentsView(ctx) {
  const list = h("ul", { class: "pick-list", "aria-label": "Agents" });
  const detail = h("div", { class: "detail" });
  const name = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const instructions = h("textarea", { rows: 3, maxlength: 20000 });
  const kbBox = h("fieldset", { class: "checks" }, h("legend", {}, "Knowledge bases it searches"));
  const createForm = ctx.canEdit && h("form", { class: "card", onsubmit: create },
    h("h2", {}, "New agent"), field("Name", name),
    field("Instructions (optional)", instructions, "The model is the server's default."), kbBox,
    h("button", { type: "submit", class: "primary" }, "Create"));
  const el = h("section", { class: "view", hidden: true, "aria-labelledby": "agents-title" },
    h("h1", { id: "agents-title", tabindex: -1 }, "Agents"),
    h("div", { class: "split" }, h("div", { class: "side" }, h("h2", {}, "Agents"), list, createForm), detail));

  let agents = [];
  let selected = null;
  let controller = null;
  let runId = null;

  async function loadKbs() {
    if (!createForm) return;
    let kbs;
    try { kbs = await ctx.knowledgeBases(); } catch { return; }
    const checked = new Set([...kbBox.querySelectorAll("input:checked")].map((i) => i.value));
    kbBox.querySelectorAll("label, p").forEach((l) => l.remove());
    if (!kbs.length) kbBox.append(h("p", { class: "muted small" }, "None yet: create one under Knowledge."));
    for (const kb of kbs) {
      kbBox.append(h("label", { class: "check" },
        h("input", { type: "checkbox", value: kb.id, checked: checked.has(kb.id) }), kb.name));
    }
  }

  async function load() {
    try { agents = (await api.get("/agents", { limit: 100 })).data; } catch (err) { return showError(err, list); }
    if (!agents.some((a) => a.id === selected)) selected = agents[0]?.id ?? null;
    replace(list, agents.length ? agents.map((a) => h("li", {},
      h("button", { type: "button", class: "pick", "aria-current": a.id === selected ? "true" : null,
                    onclick: () => { selected = a.id; stopWatching(); load(); } },
        h("span", { class: "pick-name" }, a.name), h("span", { class: "muted" }, `${a.type} · ${a.status}`))))
      : h("li", { class: "muted" }, "No agents yet."));
    renderDetail();
  }

  async function create(event) {
    event.preventDefault();
    await busy(event.submitter, async () => {
      try {
        const body = { name: name.value.trim(), instructions: instructions.value.trim(),
                       kb_ids: [...kbBox.querySelectorAll("input:checked")].map((i) => i.value) };
        const agent = (await api.post("/agents", body)).data;
        name.value = instructions.value = "";
        kbBox.querySelectorAll("input:checked").forEach((box) => { box.checked = false; });
        selected = agent.id;
        announce(`Agent ${agent.name} created.`);
        await load();
      } catch (err) { showError(err); }
    });
  }

  // --- the selected agent: run form, live trace, earlier runs ------------------------------------------------
  const input = h("textarea", { rows: 2, required: true, maxlength: 100000 });
  const runButton = h("button", { type: "submit", class: "primary" }, "Run");
  const cancelButton = h("button", { type: "button", class: "danger", disabled: true, onclick: cancel }, "Cancel run");
  const trace = h("ol", { class: "trace", "aria-label": "Run trace" });
  const output = h("div", { class: "answer", "aria-live": "polite" });
  const runState = h("p", { class: "muted", role: "status" });
  const runs = h("div", { class: "runs" });

  function renderDetail() {
    const agent = agents.find((a) => a.id === selected);
    if (!agent) return replace(detail, h("p", { class: "muted" }, "Select or create an agent."));
    replace(detail,
      h("h2", {}, agent.name),
      h("p", { class: "muted" }, `${agent.type} · model ${agent.model} · ${agent.status} · searches ` +
        (agent.kb_ids.length ? `${agent.kb_ids.length} knowledge base${agent.kb_ids.length > 1 ? "s" : ""}` : "no knowledge base")),
      agent.description && h("p", {}, agent.description),
      h("form", { class: "card", onsubmit: start },
        field("Input", input), h("div", { class: "buttons" }, runButton, cancelButton)),
      h("h3", {}, "Live trace"), runState, trace, h("h3", {}, "Output"), output,
      h("h3", {}, "Recent runs"), runs);
    loadRuns();
  }

  function resetTrace(text) {
    replace(trace);
    replace(output);
    runState.textContent = text;
  }

  function addEvent({ event: type, id, data }) {
    if (type === "execution") runId = data.execution_id || data.run_id;
    if (type === "content") output.textContent += data.content;
    const last = trace.lastElementChild;
    if ((type === "content" || type === "thinking") && last && last.dataset.type === type) { // one line per stretch of deltas
      last.querySelector(".ev-text").textContent += data.content;
      return;
    }
    trace.append(h("li", { "data-type": type },
      h("span", { class: "ev-seq" }, `#${id ?? data.seq ?? ""}`), h("span", { class: `ev-type ev-${type}` }, type),
      h("span", { class: "ev-text" }, summary(type, data))));
    if (TERMINAL.has(type)) {
      runState.textContent = type === "done" ? "Run finished." : data.code === "cancelled" ? "Run cancelled." : "Run ended with an error.";
    }
  }

  async function follow(method, path, options, label) {
    stopWatching();
    controller = new AbortController();
    runButton.disabled = true;
    cancelButton.disabled = false;
    runState.textContent = label;
    try {
      await api.stream(method, path, { ...options, signal: controller.signal, onEvent: addEvent });
    } catch (err) {
      if (err.name !== "AbortError") runState.textContent = err.message;
    } finally {
      controller = null;
      runButton.disabled = false;
      cancelButton.disabled = true;
      loadRuns();
    }
  }

  function start(event) {
    event.preventDefault();
    resetTrace("");
    runId = null;
    follow("POST", `/agents/${api.enc(selected)}/run/stream`, { json: { input: input.value } }, "Running…");
  }

  async function cancel() {
    if (!runId) return;
    try {
      const result = await api.post(`/executions/${api.enc(runId)}/cancel`);
      announce(result.data.cancelled ? "Cancellation requested." : "The run had already finished.");
    } catch (err) { showError(err); }
  }

  function stopWatching() { controller?.abort(); }

  async function view(run) {
    resetTrace(`Run ${run.id} (${run.status})`);
    runId = run.id;
    try {
      const events = (await api.get(`/executions/${api.enc(run.id)}/events`)).data;
      for (const e of events) addEvent({ event: e.type, id: e.seq, data: e });
      if (run.status === "running") {
        const after = events.length ? events[events.length - 1].seq : 0;
        follow("GET", `/executions/${api.enc(run.id)}/stream`, { query: { after } }, "Following the live run…");
      }
    } catch (err) { showError(err, trace); }
  }

  async function loadRuns() {
    if (!selected) return;
    try {
      const result = await api.get("/executions", { agent_id: selected, limit: 10 });
      if (!result.data.length) return replace(runs, h("p", { class: "muted" }, "No runs yet."));
      replace(runs, h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { class: "visually-hidden" }, "Recent runs"),
        h("thead", {}, h("tr", {}, ["Started", "Status", "Input", "Latency", "Tokens", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, result.data.map((run) => h("tr", {},
          h("td", {}, fmtDate(run.started_at)), h("td", {}, statusBadge(run.status)),
          h("td", { class: "clip" }, run.input),
          h("td", {}, run.latency_ms != null ? `${Math.round(run.latency_ms)} ms` : "—"),
          h("td", {}, String(run.total_tokens)),
          h("td", {}, h("button", { type: "button", "aria-label": `Show the trace of the run started ${fmtDate(run.started_at)}`,
                                    onclick: () => view(run) }, "Trace"))))))));
    } catch (err) { showError(err, runs); }
  }

  return {
    el,
    show() { el.hidden = false; load(); loadKbs(); },
    hide() { el.hidden = true; stopWatching(); },
  };
}
