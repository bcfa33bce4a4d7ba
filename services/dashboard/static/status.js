// Camera and agent status: every 5 s, /api/v1/agents refreshes each element marked
// data-status-camera="client/camera" (its data-field children) and each agent row
// (data-agent). The server renders the same fields first; this only keeps them current.
(() => {
  const cameras = document.querySelectorAll("[data-status-camera]");
  const agents = document.querySelectorAll("[data-agent]");
  if (!cameras.length && !agents.length) return;
  const age = (s) => (s === null || s === undefined ? "–" : `${Math.round(s)} s`);
  const set = (root, field, text, className) => {
    root.querySelectorAll(`[data-field="${field}"]`).forEach((el) => {
      el.textContent = text;
      if (className !== undefined) el.className = className;
    });
  };

  function showCamera(root, row) {
    const s = row ? row.status : null;
    const state = row ? row.state : "unknown";
    set(root, "state", state, `badge state-${state}`);
    set(root, "live", s && s.live ? "live" : "offline", s && s.live ? "badge ok" : "badge");
    set(root, "fps", s ? `${s.input_fps.toFixed(1)} / ${s.output_fps.toFixed(1)}` : "–");
    set(root, "frame_age", age(s ? s.frame_age_s : null));
    set(root, "reconnects", s ? String(s.reconnects) : "–");
    set(root, "restarts", s ? String(s.restarts) : "–");
    set(root, "host", s ? s.host : "–");
    set(root, "session_id", s && s.session_id ? s.session_id : "–");
    set(root, "last_error", s && s.last_error ? s.last_error : "");
    root.querySelectorAll('[data-field="none"]').forEach((el) => { el.hidden = Boolean(s); });
  }

  async function refresh() {
    let body;
    try {
      const response = await fetch("/api/v1/agents", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      body = await response.json();
    } catch {
      return;  // offline for a moment: keep what is shown
    }
    const rows = new Map(body.cameras.map((c) => [`${c.client_id}/${c.camera_id}`, c]));
    cameras.forEach((root) => showCamera(root, rows.get(root.dataset.statusCamera)));
    const byId = new Map(body.agents.map((a) => [a.agent_id, a]));
    agents.forEach((root) => {
      const a = byId.get(root.dataset.agent);
      if (!a) return;
      set(root, "agent_state", a.state, `badge state-${a.state}`);
      set(root, "camera_count", String(a.cameras.length));
      set(root, "heartbeat_age", `${age(a.last_heartbeat_age_s)} ago`);
    });
  }

  setInterval(refresh, 5000);
})();
