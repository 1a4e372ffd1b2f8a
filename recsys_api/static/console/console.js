// The recsys operator console: polls GET /v1/console/state and runs searches.
// Vanilla JS, no build step; every text is set with textContent (nothing is parsed as HTML).
"use strict";

(function () {
  const STATE_URL = "/v1/console/state";
  const TOKEN_KEY = "recsys-console-token";
  const STOP_WORDS = new Set(("the and for are with that this from into was were have has had not but its our "
    + "their they them can may also than then which what when where who how why all any each other such "
    + "more most some these those been being over under between about after before using used use").split(" "));
  let refreshMs = 2000;
  let state = null;

  const $ = (selector) => document.querySelector(selector);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replace(target, ...children) {
    target.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  }

  // -- formatting -------------------------------------------------------------------

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let value = Number(n);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(Number(seconds));
    if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Number(seconds) < 10 ? Number(seconds).toFixed(1) : s}s`;
  }

  function count(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function bar(percent, label) {
    const p = Math.max(0, Math.min(100, Number(percent) || 0));
    const fill = el("span", {class: "bar-fill"});
    fill.style.width = `${p}%`;
    return el("span", {class: "bar", role: "progressbar", "aria-valuenow": p.toFixed(1), "aria-valuemin": 0,
                       "aria-valuemax": 100}, fill, el("span", {class: "bar-label", text: label}));
  }

  function notice(text, isError) {
    const box = $("#notice");
    box.hidden = !text;
    box.textContent = text || "";
    box.classList.toggle("error", Boolean(isError));
  }

  // -- rendering --------------------------------------------------------------------

  function engineCard(title, engine) {
    if (!engine) return el("div", {class: "card muted"}, el("h3", {text: title}), "none");
    const rows = [
      ["engine", `${engine.engine}${engine.engine_version ? " " + engine.engine_version : ""}`],
      ["version", engine.version], ["generation", engine.generation],
      ["publications", count(engine.publications)], ["sentences", count(engine.sentences)],
      ["created", when(engine.created_at)], ["installed", when(engine.installed_at)], ["size", bytes(engine.size)],
    ];
    if (engine.quality_gate) rows.push(["quality gate", gateText(engine.quality_gate)]);
    const metrics = (engine.quality && engine.quality.metrics) || {};
    for (const [name, pair] of Object.entries(metrics)) {
      rows.push([name, `${figure(pair.new)} (engine it replaced: ${figure(pair.current)})`]);
    }
    return el("div", {class: "card", "data-generation": engine.generation}, el("h3", {text: title}),
      el("dl", {}, rows.map(([k, v]) => [el("dt", {text: k}), el("dd", {text: String(v)})])));
  }

  function figure(value) {
    return typeof value === "number" ? value.toFixed(3) : "?";
  }

  function gateText(gate) {
    if (gate.outcome === "passed") return `passed (tolerance ${gate.tolerance})`;
    if (gate.outcome === "forced") {
      return `forced past it: ${gate.metric} ${figure(gate.new)} against ${figure(gate.current)}`;
    }
    return `not applied: ${gate.reason || "?"}`;
  }

  function renderEngine(engine) {
    replace($("#engine"), engineCard("current", engine.current), engineCard("previous (rollback target)",
      engine.previous));
  }

  function rolloutLine(rollout) {
    if (!rollout) return null;
    const label = `${rollout.state || "?"} generation ${rollout.generation}: ${bytes(rollout.bytes_fetched)} of `
      + `${bytes(rollout.bytes_needed)} (${count(rollout.files_fetched)}/${count(rollout.files_needed)} files`
      + `${rollout.bytes_reused ? ", " + bytes(rollout.bytes_reused) + " reused" : ""}) in ${duration(rollout.seconds)}`
      + `${rollout.error ? " — " + rollout.error : ""}`;
    return el("div", {class: `rollout state-${rollout.state || "unknown"}`}, bar(rollout.percent, label));
  }

  function renderWorkers(cluster) {
    const badge = $("#converged");
    badge.textContent = cluster.converged ? "converged" : "not converged";
    badge.className = `badge ${cluster.converged ? "ok" : "warn"}`;
    if (!cluster.machines.length) {
      replace($("#machines"), el("p", {class: "muted", text: "no live worker"}));
      return;
    }
    replace($("#machines"), cluster.machines.map((machine) => el("div", {
      class: "machine", "data-host": machine.host, "data-data-dir": machine.data_dir,
    },
    el("h3", {}, `${machine.host} `, el("span", {class: "muted", text: machine.data_dir}),
      ` — ${machine.processes} process${machine.processes === 1 ? "" : "es"} `,
      el("span", {class: `badge ${machine.converged ? "ok" : "warn"}`,
                  text: machine.converged ? "current" : "behind"})),
    rolloutLine(machine.rollout),
    el("table", {class: "workers"},
      el("thead", {}, el("tr", {}, ["pid", "queues", "generation", "version", "last seen", ""].map(
        (h) => el("th", {text: h})))),
      el("tbody", {}, machine.workers.map((w) => el("tr", {
        class: `worker${w.stale ? " stale" : ""}${w.lagging ? " lagging" : ""}`, "data-pid": w.pid,
      },
      el("td", {text: w.pid}),
      el("td", {title: (w.queues || []).join(", ") || "every queue",
                text: (w.queues || []).map((q) => q.split(".").pop()).join(", ") || "all"}),
      el("td", {text: w.generation === null ? "none" : w.generation}), el("td", {text: w.version || "–"}),
      el("td", {text: w.age_s === null ? "–" : `${duration(w.age_s)} ago`}),
      el("td", {}, w.stale ? el("span", {class: "badge warn", text: "stale"}) : null,
        w.lagging ? el("span", {class: "badge warn", text: "lagging"}) : null))))))));
  }

  function renderRollouts(rollouts, cluster) {
    if (!rollouts.length) {
      replace($("#rollouts"), el("p", {class: "muted", text: "no rollout reported"}));
      return;
    }
    replace($("#rollouts"), rollouts.map((r) => el("div", {class: "rollout-machine", "data-host": r.host},
      el("h3", {}, `${r.host} `, el("span", {class: "muted", text: r.data_dir || ""}),
        r.generation === cluster.generation && r.state === "done" ? el("span", {class: "badge ok", text: "done"})
          : null),
      rolloutLine(r))));
  }

  function renderBuilds(builds) {
    const running = builds.running;
    if (running) {
      const p = running.progress;
      let progress = el("p", {class: "muted", text: "starting…"});
      if (p) {
        const percent = p.total ? (100 * p.done) / p.total : 0;
        const label = `${p.stage}: ${count(p.done)}${p.total !== null ? " / " + count(p.total) : ""}`
          + `${p.rate ? `, ${count(Math.round(p.rate))}/s` : ""}${p.eta_s !== null ? `, ${duration(p.eta_s)} left` : ""}`;
        progress = bar(p.total ? percent : 0, label);
      }
      replace($("#build-running"), el("div", {class: "build-running", "data-task": running.task_id},
        el("p", {}, `running on ${running.host} (pid ${running.pid}) since ${when(running.since)}, engine `
          + `${running.engine || "?"}, task ${running.task_id || "?"}`), progress));
    } else if (builds.queued) {
      replace($("#build-running"), el("p", {class: "build-queued", text: `queued: task ${builds.queued}`}));
    } else {
      replace($("#build-running"), el("p", {class: "muted", text: "no build running"}));
    }
    replace($("#build-history tbody"), builds.last.map((b) => el("tr", {
      class: `build outcome-${b.outcome}`, "data-task": b.task_id,
    },
    el("td", {text: when(b.finished_at)}),
    el("td", {}, el("span", {class: `badge ${b.outcome === "succeeded" ? "ok" : "warn"}`, text: b.outcome}),
      b.error ? ` ${b.error.code}: ${b.error.message}` : ""),
    el("td", {text: duration(b.seconds)}),
    el("td", {text: b.engine ? `${b.engine.name} gen ${b.engine.generation} (${b.engine.version})` : "–"}),
    el("td", {text: count(b.publications)}),
    el("td", {class: "mono", title: b.task_id, text: String(b.task_id || "").slice(0, 8)}))));
  }

  function renderQueues(queues) {
    $("#queue-source").textContent = `(${queues.source}${queues.error ? ": " + queues.error : ""})`;
    replace($("#queues tbody"), queues.queues.map((q) => el("tr", {class: "queue", "data-queue": q.name},
      el("td", {class: "mono", text: q.queues > 1 ? `${q.name} (${q.queues} queues)` : q.name}),
      el("td", {text: q.ready === null ? "n/a" : count(q.ready)}),
      el("td", {text: q.unacked === null || q.unacked === undefined ? "n/a" : count(q.unacked)}),
      el("td", {text: q.consumers === null || q.consumers === undefined ? "n/a" : count(q.consumers)}))));
  }

  function render(data) {
    state = data;
    renderEngine(data.engine);
    renderWorkers(data.cluster);
    renderRollouts(data.rollouts, data.cluster);
    renderBuilds(data.builds);
    renderQueues(data.queues);
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${response.status} ${body.title || ""}${body.description ? ": " + body.description : ""}`;
    } catch (e) {
      return `${response.status} ${response.statusText}`;
    }
  }

  async function refresh() {
    if (!document.hidden) {
      try {
        const response = await fetch(STATE_URL, {cache: "no-store", headers: {Accept: "application/json"}});
        if (!response.ok) throw new Error(await errorText(response));
        const data = await response.json();
        refreshMs = data.refresh_ms || refreshMs;
        render(data);
        $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
        $("#status").classList.remove("error");
        document.body.dataset.loaded = "true";
      } catch (e) {
        $("#status").textContent = `state unavailable: ${e.message}`;
        $("#status").classList.add("error");
      }
    }
    setTimeout(refresh, refreshMs);
  }

  // -- token-guarded actions -------------------------------------------------------------

  function askToken(question) {
    const dialog = $("#token-dialog");
    const input = $("#token-input");
    $("#token-question").textContent = question;
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    return new Promise((resolve) => {
      const done = (value) => {
        $("#token-ok").onclick = null;
        $("#token-cancel").onclick = null;
        input.onkeydown = null;
        dialog.close();
        resolve(value);
      };
      $("#token-ok").onclick = () => done(input.value.trim() || null);
      $("#token-cancel").onclick = () => done(null);
      input.onkeydown = (event) => { if (event.key === "Enter") done(input.value.trim() || null); };
      dialog.showModal();
      input.focus();
    });
  }

  async function guarded(question, method, url) {
    const token = await askToken(question);
    if (!token) return;
    const response = await fetch(url, {method, headers: {Authorization: `Bearer ${token}`}});
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#forget-token").hidden = true;
      notice(`refused: ${await errorText(response)}`, true);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#forget-token").hidden = false;
    if (!response.ok) {
      notice(`${method} ${url}: ${await errorText(response)}`, true);
      return;
    }
    const body = await response.json();
    notice(url.endsWith("/builds") ? `build started: task ${body.task_id}`
      : `rolled back: generation ${body.generation} is version ${body.version}`, false);
  }

  // -- search ------------------------------------------------------------------------

  function stem(word) {
    const w = word.toLowerCase();
    return w.length > 6 ? w.slice(0, 6) : w;
  }

  function highlighted(sentence, querySentence) {
    const wanted = new Set();
    for (const word of (querySentence || "").match(/[\p{L}\p{N}]+/gu) || []) {
      if (word.length >= 3 && !STOP_WORDS.has(word.toLowerCase())) wanted.add(stem(word));
    }
    const parts = [];
    let last = 0;
    for (const match of sentence.matchAll(/[\p{L}\p{N}]+/gu)) {
      if (match[0].length >= 3 && wanted.has(stem(match[0]))) {
        parts.push(sentence.slice(last, match.index), el("mark", {text: match[0]}));
        last = match.index + match[0].length;
      }
    }
    parts.push(sentence.slice(last));
    return parts;
  }

  async function search(body, description) {
    const status = $("#search-status");
    status.textContent = `searching ${description}…`;
    const started = performance.now();
    let response;
    try {
      response = await fetch("/v1/recommendations", {
        method: "POST", headers: {"Content-Type": "application/json", Accept: "application/json"},
        body: JSON.stringify({k: 10, ...body}),
      });
    } catch (e) {
      status.textContent = `search failed: ${e.message}`;
      return;
    }
    if (!response.ok) {
      status.textContent = `search failed: ${await errorText(response)}`;
      replace($("#results"));
      return;
    }
    const result = await response.json();
    const ms = Math.round(performance.now() - started);
    status.textContent = `${result.recommendations.length} results for ${description} in ${ms} ms `
      + `(engine ${result.engine.name}, generation ${result.engine.generation})`;
    replace($("#results"), result.recommendations.map((r) => el("li", {class: "result", "data-id": r.publication_id},
      el("div", {class: "result-head"},
        el("span", {class: "title", text: r.title}),
        el("span", {class: "score", text: Number(r.score).toFixed(3)})),
      el("div", {class: "muted"}, `${r.publication_id}${r.label ? " · " + r.label : ""}${r.year ? " · " + r.year : ""} · `,
        el("a", {href: "#", class: "more-like-this", "data-id": r.publication_id, text: "more like this",
                 onclick: (event) => {
                   event.preventDefault();
                   $("#search-input").value = "";
                   search({publication_id: r.publication_id}, `“${r.title}”`);
                 }})),
      el("ul", {class: "evidence"}, (r.evidence || []).map((e) => el("li", {},
        el("span", {class: "score", text: Number(e.score).toFixed(3)}), " ",
        el("span", {class: "sentence"}, highlighted(e.sentence, e.query_sentence))))))));
  }

  // -- start ---------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("#build-button").addEventListener("click", () => guarded(
      "Start a build of a new engine (POST /v1/engine/builds)?", "POST", "/v1/engine/builds"));
    $("#rollback-button").addEventListener("click", () => {
      const previous = state && state.engine.previous;
      const question = previous ? `Roll back to version ${previous.version} (POST /v1/engine/rollback)?`
        : "Roll back to the previous engine (POST /v1/engine/rollback)?";
      guarded(question, "POST", "/v1/engine/rollback");
    });
    $("#forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
    $("#forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#forget-token").hidden = true;
    });
    $("#search-input").addEventListener("keydown", (event) => {
      const text = event.target.value.trim();
      if (event.key === "Enter" && text) search({text}, "the text");
    });
    refresh();
  });
})();
