// Bank alarm console: new alarms, clears and updates arrive over server-sent events (/v1/iot/stream,
// authenticated by the session cookie); "Acknowledge" calls the JSON API with the CSRF header.
"use strict";

(function () {
  function when(ms) {
    return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  }

  function td(className, text) {
    const cell = document.createElement("td");
    if (className) cell.className = className;
    if (text !== undefined) cell.textContent = text;
    return cell;
  }

  function code(text) {
    const element = document.createElement("code");
    element.textContent = text;
    return element;
  }

  function init() {
    const table = document.getElementById("alarms");
    if (!table) return;
    const api = window.creditflow.api;
    const rows = document.getElementById("alarm-rows");
    const live = document.getElementById("live-status");
    const problem = document.getElementById("alarm-error");
    const empty = document.getElementById("no-alarms");
    const loanOf = window.creditflow.pageData("alarm-assets") || {};
    const user = table.dataset.user;

    function rowOf(alarmId) {
      return Array.from(rows.querySelectorAll("tr[data-alarm]")).find((tr) => tr.dataset.alarm === alarmId) || null;
    }

    function setLive(state, text) {
      live.dataset.state = state;
      live.textContent = text;
    }

    function showProblem(text) {
      problem.textContent = text;
      problem.hidden = !text;
    }

    function setStatus(row, status) {
      row.dataset.status = status;
      const span = document.createElement("span");
      span.className = "state state-alarm-" + status;
      span.textContent = status;
      row.querySelector("td.status").replaceChildren(span);
    }

    function ackButton(alarmId) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "ack";
      button.id = "ack-" + alarmId;
      button.dataset.ack = alarmId;
      button.textContent = "Acknowledge";
      return button;
    }

    function clearButton(alarmId) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "clear secondary";
      button.id = "clear-" + alarmId;
      button.dataset.clear = alarmId;
      button.textContent = "Clear…";
      return button;
    }

    function markCleared(row) {
      setStatus(row, "cleared");
      const button = row.querySelector("button.clear");
      if (button) button.remove();
    }

    function addRow(event) {
      const row = document.createElement("tr");
      row.dataset.alarm = event.alarm_id;
      row.id = "alarm-" + event.alarm_id;
      row.dataset.acknowledged = "no";
      row.className = "new";
      const severity = td("sev sev-" + String(event.severity).toLowerCase(), event.severity);
      const details = td("details");
      details.appendChild(code(JSON.stringify(event.details)));
      const actions = td();
      actions.className = "actions";
      actions.append(ackButton(event.alarm_id), " ", clearButton(event.alarm_id));
      const asset = td();
      asset.appendChild(code(event.asset_id));
      const loan = td();
      loan.appendChild(code(loanOf[event.asset_id] || "-"));
      row.append(
        td("raised", when(event.ts_ms)), asset, loan, td("type", event.alarm_type), severity,
        td("status"), td("ack-by", "-"), details, actions,
      );
      setStatus(row, "active");
      rows.prepend(row);
      if (empty) empty.hidden = true;
    }

    function onAlarm(event) {
      const row = rowOf(event.alarm_id);
      if (event.action === "raise") {
        if (!row) addRow(event);
      } else if (row && event.action === "clear") {
        markCleared(row);
        if (event.details) row.querySelector("td.details").replaceChildren(code(JSON.stringify(event.details)));
      } else if (row && event.action === "update") {
        row.querySelector("td.details").replaceChildren(code(JSON.stringify(event.details)));
      }
    }

    function onLoan(event) {
      const list = document.getElementById("loan-events");
      const item = document.createElement("li");
      item.dataset.loan = event.loan_id;
      item.textContent = when(event.ts_ms) + " loan " + event.loan_id + ": " + event.from_band + " → " + event.to_band +
        (event.ltv_bps === null ? " (no collateral value)" : " at LTV " + (event.ltv_bps / 100).toFixed(2) + " %") +
        " (" + event.cause + ")";
      const emptyNote = list.querySelector("li.empty");
      if (emptyNote) emptyNote.remove();
      list.prepend(item);
    }

    async function acknowledge(button) {
      const alarmId = button.dataset.ack;
      button.disabled = true;
      showProblem("");
      try {
        const alarm = await api("POST", "/v1/iot/alarms/" + encodeURIComponent(alarmId) + "/ack", { user: user });
        const row = rowOf(alarmId);
        if (row) {
          row.dataset.acknowledged = "yes";
          row.querySelector("td.ack-by").textContent = alarm.ack_by;
          setStatus(row, alarm.status);
          button.remove();
        }
      } catch (error) {
        button.disabled = false;
        showProblem("Could not acknowledge alarm " + alarmId + ": " + error.message);
      }
    }

    async function clearAlarm(button) {
      const alarmId = button.dataset.clear;
      const note = window.prompt("Why is alarm " + alarmId + " cleared? (recorded with your name)");
      if (note === null) return;
      button.disabled = true;
      showProblem("");
      try {
        const alarm = await api("POST", "/v1/iot/alarms/" + encodeURIComponent(alarmId) + "/clear", { user: user, note: note });
        const row = rowOf(alarmId);
        if (row) {
          markCleared(row);
          row.dataset.acknowledged = "yes";
          row.querySelector("td.ack-by").textContent = alarm.ack_by;
          const ack = row.querySelector("button.ack");
          if (ack) ack.remove();
          row.querySelector("td.details").replaceChildren(code(JSON.stringify(alarm.details)));
        }
      } catch (error) {
        button.disabled = false;
        showProblem("Could not clear alarm " + alarmId + ": " + error.message);
      }
    }

    rows.addEventListener("click", function (event) {
      const ack = event.target.closest("button.ack");
      if (ack) acknowledge(ack);
      const clear = event.target.closest("button.clear");
      if (clear) clearAlarm(clear);
    });

    function connect() {
      const source = new EventSource("/v1/iot/stream", { withCredentials: true });
      source.addEventListener("open", () => setLive("live", "live: new alarms appear here as they are raised"));
      source.addEventListener("alarm", (e) => onAlarm(JSON.parse(e.data)));
      source.addEventListener("loan_band", (e) => onLoan(JSON.parse(e.data)));
      source.addEventListener("overflow", () => {
        source.close();
        setLive("reconnecting", "the stream fell behind: reconnecting…");
        setTimeout(connect, 1000);
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CLOSED) {
          setLive("closed", "the live stream closed: reload the page");
        } else {
          setLive("reconnecting", "reconnecting to the live stream…");
        }
      });
    }
    connect();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
