// Live view: server-sent events from /api/v1/cameras/{id}/live replace the frame, its
// caption and the detection list whenever a newer frame has been detected.
(() => {
  const root = document.getElementById("live");
  if (!root) return;
  const camera = root.dataset.camera;
  const $ = (id) => document.getElementById(id);
  const feed = $("live-feed");  // the results stream; "Live" itself is static/status.js

  function show(result) {
    const img = $("live-frame");
    img.src = result.render_url || result.frame_url;
    img.dataset.seq = String(result.frame_seq);
    $("live-seq").textContent = String(result.frame_seq);
    $("live-time").textContent = result.captured_at.replace("T", " ").slice(0, 19) + " UTC";
    $("live-model").textContent = `${result.model.name} v${result.model.version}`;
    $("live-raw").hidden = Boolean(result.render_url);
    $("live-figure").hidden = false;
    $("live-empty").hidden = true;
    const list = $("live-detections");
    list.replaceChildren(
      ...result.detections.map((d) => {
        const item = document.createElement("li");
        const label = document.createElement("span");
        const score = document.createElement("span");
        label.textContent = d.label;
        score.textContent = d.score.toFixed(2);
        item.append(label, score);
        return item;
      }),
    );
    $("live-none").hidden = result.detections.length > 0;
  }

  const source = new EventSource(`/api/v1/cameras/${encodeURIComponent(camera)}/live`);
  source.addEventListener("open", () => { feed.textContent = "connected"; });
  source.addEventListener("error", () => { feed.textContent = "reconnecting…"; });
  source.addEventListener("result", (event) => {
    const payload = JSON.parse(event.data);
    if (payload.result) show(payload.result);
  });

  // Clip links: fetch fresh presigned URLs (they expire) and play the chosen segment.
  const player = $("clip-player");
  document.querySelectorAll("#clip-list a").forEach((link) => {
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const response = await fetch(`/api/v1/cameras/${encodeURIComponent(camera)}/clips`);
      if (!response.ok) return;
      const clip = (await response.json()).find(
        (c) => String(c.segment) === link.dataset.segment && c.session_id === link.dataset.session,
      );
      if (clip && player) { player.src = clip.url; player.play(); }
    });
  });
})();
