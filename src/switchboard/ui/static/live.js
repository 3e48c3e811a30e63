// The live tail: new events from /ui/live/stream (server-sent events) go on top of the table.
// Text only (textContent), never markup; the table keeps its newest 200 rows.
"use strict";
(function () {
  const body = document.getElementById("live-rows");
  const state = document.getElementById("live-state");
  if (!body || !window.EventSource) return;
  const source = new EventSource("/ui/live/stream?after=" + encodeURIComponent(body.dataset.after));
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text || "";
    row.appendChild(td);
    return td;
  }
  source.addEventListener("open", function () { state.textContent = "Live: new events appear at the top."; });
  source.addEventListener("error", function () { state.textContent = "Reconnecting…"; });
  source.addEventListener("ev", function (message) {
    const e = JSON.parse(message.data);
    const row = document.createElement("tr");
    row.dataset.id = e.id;
    cell(row, e.time);
    cell(row, e.type);
    cell(row, e.subject);
    cell(row, e.source);
    cell(row, e.status);
    const link = document.createElement("a");
    link.href = "/ui/events/" + encodeURIComponent(e.id);
    link.textContent = e.id;
    cell(row, "").appendChild(link);
    const empty = document.getElementById("live-empty");
    if (empty) empty.remove();
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 200) body.deleteRow(-1);
  });
})();
