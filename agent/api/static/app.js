// Relais dashboard: plain JS, no build step, nothing loaded from outside. Every DOM node is built with
// textContent (never as HTML markup), so no text coming from the API can become markup.
"use strict";

const STATE_LABELS = {
  scheduled: "Programmé", ready: "Prêt", sending: "Envoi en cours", sent: "Envoyé", retrying: "Nouvel essai prévu",
  waiting_network: "En attente du réseau", waiting_card: "En attente de la carte CPS", forwarded: "Transmis au poste du médecin",
  failed: "En échec", cancelled: "Annulé", unknown: "À vérifier",
};
const PENDING = new Set(["scheduled", "ready", "sending", "retrying", "waiting_network", "waiting_card", "forwarded"]);
const session = { csrf: null };

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(text, ok = false) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-Relais-CSRF"] = session.csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  // A wrong CPS PIN is a 401 too: only the dashboard's own session expiring says so.
  if (response.status === 401 && !(data && String(data.code || "").startsWith("pin"))) {
    setAgentState("Session expirée : rouvrez le tableau de bord depuis l'icône Relais.");
  }
  if (!response.ok) {
    const error = new Error((data && data.detail) || `Erreur ${response.status}`);
    error.status = response.status;
    error.problem = data;
    throw error;
  }
  return data;
}

function setAgentState(text) { document.getElementById("agent-state").textContent = text; }
function fmtDate(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? value : d.toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "medium" });
}
function countdown(sendAt) {
  const seconds = Math.round((new Date(sendAt) - Date.now()) / 1000);
  if (isNaN(seconds)) return "";
  if (seconds <= 0) return "maintenant";
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return `dans ${m} min ${String(s).padStart(2, "0")} s`;
}

// ---- session -------------------------------------------------------------------------------------------
async function openSession() {
  const match = location.hash.match(/login=([A-Za-z0-9_-]+)/);
  if (match) {
    history.replaceState(null, "", "/ui/");  // the one-time code leaves the address bar at once
    const result = await api("POST", "/ui/session", { code: match[1] });
    session.csrf = result.csrf;
  } else {
    const result = await api("GET", "/ui/session");
    session.csrf = result.csrf;
  }
}

// ---- tabs ----------------------------------------------------------------------------------------------
const VIEWS = { queue: loadOrders, cards: loadCards, dmp: loadDmp, traces: loadTraces, notices: loadNotices, settings: loadSettings };
function selectTab(tab, focus = true) {
  for (const other of document.querySelectorAll("[role=tab]")) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  const name = tab.id.replace("tab-", "");
  VIEWS[name]().catch((e) => show(e.message));
}
function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) { event.preventDefault(); selectTab(tabs[(i + step + tabs.length) % tabs.length]); }
      if (event.key === "Home") { event.preventDefault(); selectTab(tabs[0]); }
      if (event.key === "End") { event.preventDefault(); selectTab(tabs[tabs.length - 1]); }
    });
  });
}

// ---- queue ---------------------------------------------------------------------------------------------
// "Annuler" waits UNDO_SECONDS before it reaches the agent, so a wrong click can be undone ("Rétablir"); the
// window is offered only when the order cannot leave meanwhile (programmed, departure further away than the
// window); otherwise the cancel is immediate and says so. Pending cancels are sent if the page is closed.
const UNDO_SECONDS = 5;
const pendingCancels = new Map();  // order id -> { timer, deadline, order }
window.relaisPendingCancels = pendingCancels;  // read by the UI tests: what is still undoable

function orderTitle(order) {
  const doc = order.document || {};
  return doc.title || order.title || doc.type_label || doc.type_code || order.client_ref || order.id;
}
function fmtBirth(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  return m ? `${m[3]}/${m[2]}/${m[1]}` : (value || "");
}
function orderPatient(order) {
  const p = order.patient || {};
  const names = p.display_name || [p.birth_name || p.family_name, (p.given_names || []).join(" ")].filter(Boolean).join(" ");
  if (!names) return p.ins ? `INS ${p.ins}` : "";
  return p.birth_date ? `${names}, né(e) le ${fmtBirth(p.birth_date)}` : names;
}
function documentCell(order) {
  const doc = order.document || {};
  const author = (order.author || {}).display_name;
  const details = [doc.title && doc.type_label && doc.type_label !== doc.title ? doc.type_label : null,
    author ? `par ${author}` : null].filter(Boolean).join(" · ");
  return h("td", {}, orderTitle(order), details ? h("br") : null, details ? h("small", {}, details) : null);
}
const DESTINATION_LABELS = { dmp: "DMP", patient_mss: "Messagerie du patient" };
function destinationName(d) {
  return DESTINATION_LABELS[d] || (d.startsWith("mss:") ? `MSSanté ${d.slice(4)}` : d);
}
function destinations(order) {
  const parts = (order.deliveries || []).map((d) => `${destinationName(d.destination)} : ${STATE_LABELS[d.state] || d.state}`);
  const v = order.visibility || {};
  const hidden = [v.invisible_to_patient ? "invisible au patient" : null, v.masked_to_ps ? "masqué aux professionnels" : null,
    v.invisible_to_legal_reps ? "invisible aux représentants légaux" : null].filter(Boolean);
  return parts.join(" · ") + (hidden.length ? ` (${hidden.join(", ")})` : "");
}
function failedDeliveries(order) { return (order.deliveries || []).filter((d) => d.state === "failed"); }
function failureCell(order) {
  const failed = failedDeliveries(order);
  const cell = h("td", {});
  for (const d of failed) {
    const error = d.last_error || {};
    const detail = [error.message, error.code ? `(${error.code})` : null].filter(Boolean).join(" ");
    cell.append(h("p", { class: "explanation" }, failed.length > 1 ? `${destinationName(d.destination)} : ` : "",
      error.explanation || error.message || "Échec de l'envoi."));
    if (detail && error.explanation) cell.append(h("p", {}, h("small", {}, `Détail technique : ${detail}`)));
    // PRE_ERR: the DMP's own code and text, as it gave them.
    if (error.dmp_code) {
      cell.append(h("p", { class: "dmp-said" }, h("small", {},
        `Réponse du DMP : ${error.dmp_code}${error.dmp_text ? ` – ${error.dmp_text}` : ""}`)));
    }
  }
  if (!failed.length && order.last_error) cell.append(typeof order.last_error === "string" ? order.last_error : (order.last_error.message || ""));
  return cell;
}
async function act(order, action, label) {
  try {
    await api("POST", `/v1/orders/${encodeURIComponent(order.id)}/${action}`);
    show(`${label} : ${orderTitle(order)}`, true);
  } catch (e) { show(e.message); }
  await loadOrders();
}
function undoable(order) {
  return order.state === "scheduled" && new Date(order.send_at) - Date.now() > (UNDO_SECONDS + 5) * 1000;
}
function askCancel(order) {
  if (!undoable(order)) {  // it could leave during the undo window: cancelled at once, and said so
    act(order, "cancel", order.state === "scheduled" ? "Envoi annulé (départ imminent : annulation immédiate)" : "Envoi annulé");
    return;
  }
  const deadline = Date.now() + UNDO_SECONDS * 1000;
  const timer = setTimeout(() => confirmCancel(order.id), UNDO_SECONDS * 1000);
  pendingCancels.set(order.id, { timer, deadline, order });
  show(`Annulation dans ${UNDO_SECONDS} s : ${orderTitle(order)}. « Rétablir » pour la retirer.`, true);
  loadOrders().catch(() => {});
}
async function confirmCancel(id) {
  const pending = pendingCancels.get(id);
  if (!pending) return;
  pendingCancels.delete(id);
  await act(pending.order, "cancel", "Envoi annulé");
}
function undoCancel(id) {
  const pending = pendingCancels.get(id);
  if (!pending) return;
  clearTimeout(pending.timer);
  pendingCancels.delete(id);
  show(`Annulation abandonnée : ${orderTitle(pending.order)} partira comme prévu.`, true);
  loadOrders().catch(() => {});
}
window.addEventListener("pagehide", () => {
  for (const [id, pending] of pendingCancels) {  // closing the page confirms what was asked
    clearTimeout(pending.timer);
    fetch(`/v1/orders/${encodeURIComponent(id)}/cancel`, { method: "POST", keepalive: true, credentials: "same-origin",
      headers: { "X-Relais-CSRF": session.csrf || "" } });
  }
  pendingCancels.clear();
});
function stateCell(state) { return h("td", { class: `state state-${state}` }, STATE_LABELS[state] || state); }
function emptyRow(tbody, columns, text) { tbody.append(h("tr", {}, h("td", { class: "empty", colspan: columns }, text))); }

async function loadOrders() {
  const data = await api("GET", "/v1/orders?limit=200");
  const items = data.items || [];
  const pending = document.getElementById("orders-pending");
  const failed = document.getElementById("orders-failed");
  const done = document.getElementById("orders-done");
  pending.replaceChildren(); failed.replaceChildren(); done.replaceChildren();
  let failures = 0;
  for (const order of items) {
    const state = order.state;
    const failedHere = failedDeliveries(order);
    if (state === "failed" || failedHere.length) {
      failures += 1;
      const buttons = [];
      if (failedHere.some((d) => !d.last_error || d.last_error.retry_helps !== false)) {
        buttons.push(h("button", { class: "primary", onclick: () => act(order, "retry", "Nouvel essai demandé") }, "Réessayer"));
      }
      buttons.push(h("button", { onclick: () => act(order, "dismiss", "Envoi retiré") }, "Retirer"));
      failed.append(h("tr", { "data-order": order.id },
        documentCell(order), h("td", {}, orderPatient(order)), h("td", {}, destinations(order)),
        failureCell(order), h("td", {}, buttons)));
    } else if (PENDING.has(state)) {
      const cancelling = pendingCancels.get(order.id);
      const when = h("td", { "data-send-at": order.send_at || "" }, state === "scheduled" ? countdown(order.send_at) : "");
      const buttons = [];
      if (cancelling) {
        buttons.push(h("span", { class: "cancelling", role: "status" }, "Annulation demandée "),
          h("button", { class: "primary", onclick: () => undoCancel(order.id) }, "Rétablir"));
      } else {
        if (state === "scheduled" || state === "waiting_card" || state === "retrying" || state === "waiting_network") {
          buttons.push(h("button", { class: "danger", onclick: () => askCancel(order) }, "Annuler"));
        }
        if (state === "scheduled") {
          buttons.push(h("button", { onclick: () => act(order, "send-now", "Envoi immédiat demandé") }, "Envoyer maintenant"));
        }
      }
      pending.append(h("tr", { "data-order": order.id }, documentCell(order), h("td", {}, orderPatient(order)),
        h("td", {}, destinations(order)), stateCell(state), when, h("td", {}, buttons)));
    } else {
      done.append(h("tr", { "data-order": order.id }, documentCell(order), h("td", {}, orderPatient(order)),
        h("td", {}, destinations(order)), stateCell(state), h("td", {}, fmtDate(order.updated_at || order.created_at))));
    }
  }
  if (!pending.children.length) emptyRow(pending, 6, "Aucun envoi en attente.");
  if (!failed.children.length) emptyRow(failed, 5, "Aucun échec.");
  if (!done.children.length) emptyRow(done, 5, "Aucun envoi terminé.");
  document.getElementById("badge-queue").textContent = failures ? String(failures) : "";
  document.getElementById("retry-failed").hidden = !failures;
}
function tickCountdowns() {
  for (const cell of document.querySelectorAll("td[data-send-at]")) {
    const row = cell.closest("tr");
    if (cell.dataset.sendAt && row.querySelector(".state-scheduled")) cell.textContent = countdown(cell.dataset.sendAt);
  }
}

// ---- cards ---------------------------------------------------------------------------------------------
async function loadCards() {
  pscState();
  const box = document.getElementById("cards-summary");
  let cards;
  try { cards = await api("GET", "/v1/cards"); }
  catch (e) { box.replaceChildren(h("p", {}, e.status === 404 ? "Lecteurs de cartes non gérés par cet agent." : e.message)); return; }
  const cps = cards.cps || {};
  const holder = cps.holder || {};
  const vitale = cards.vitale || {};
  const list = h("dl", {},
    h("dt", {}, "Lecteurs"), h("dd", {}, (cards.readers || []).map((r) => `${r.name}${r.card ? " (" + r.card + ")" : ""}`).join(", ") || "aucun"),
    h("dt", {}, "Carte CPS"), h("dd", {}, cps.present ? `${holder.given_name || ""} ${holder.family_name || ""} (RPPS ${holder.rpps || "?"})` : "absente"),
    h("dt", {}, "Connexion CPS"), h("dd", {}, cps.present ? (cps.logged_in ? "connecté" : `non connecté${cps.pin_tries_left != null ? ", essais restants : " + cps.pin_tries_left : ""}`) : ""),
    h("dt", {}, "Carte Vitale"), h("dd", {}, vitale.present ? (vitale.beneficiaries || []).map((b) => `${b.family_name || ""} ${(b.given_names || []).join(" ")}`).join(" ; ") : "absente"));
  box.replaceChildren(list);
}
async function cpsLogin(event) {
  event.preventDefault();
  const input = document.getElementById("pin");
  const pin = input.value;
  input.value = "";  // the PIN never stays on screen or in the page
  try { await api("POST", "/v1/cps/login", { pin }); show("Carte CPS connectée.", true); }
  catch (e) { show(e.message); }
  await loadCards();
}
async function cpsLogout() {
  try { await api("POST", "/v1/cps/logout"); show("Carte CPS déconnectée.", true); } catch (e) { show(e.message); }
  await loadCards();
}

// Pro Santé Connect (e-CPS): the agent gives PSC's page; the browser comes back to the agent's loopback listener.
async function pscState() {
  const label = document.getElementById("psc-state");
  try {
    const s = await api("GET", "/v1/psc/session");
    label.textContent = s.active ? `Connecté(e) avec e-CPS : ${s.professional.given_name} ${s.professional.family_name}` : "";
    document.getElementById("psc-box").hidden = false;
  } catch (e) { if (e.status === 503) document.getElementById("psc-box").hidden = true; }  // PSC not configured
}
async function pscLogin() {
  try { const started = await api("POST", "/v1/psc/login"); window.open(started.authorization_url, "_blank", "noopener"); }
  catch (e) { show(e.message); }
}
async function pscLogout() {
  try { await api("POST", "/v1/psc/logout"); show("Déconnecté(e) de Pro Santé Connect.", true); } catch (e) { show(e.message); }
  await pscState();
}

// ---- DMP access (DICA) ---------------------------------------------------------------------------------
// The view starts from the patient the carte Vitale or the LGC opened (GET /v1/patients/current): the DMP is
// reached with the INS INSi gave for them, never with typed digits; without one, INSi is asked first.
const dmp = { patient: null, identityStatus: null };
window.relaisDmp = dmp;  // read by the UI tests
function patientLine(p) {
  return p.birth_date ? `${p.display_name}, né(e) le ${fmtBirth(p.birth_date)}` : p.display_name;
}
async function loadDmp() {
  const list = document.getElementById("dmp-patients");
  let data;
  try { data = await api("GET", "/v1/patients/current"); }
  catch (e) { list.replaceChildren(h("li", {}, e.message)); return; }
  const items = data.items || [];
  list.replaceChildren(...items.map((p) => {
    const source = p.source === "lgc" ? "ouvert dans votre logiciel" : "carte Vitale";
    const action = p.ins
      ? h("button", { type: "button", class: "primary", onclick: () => openDmp(p) }, `Ouvrir le DMP de ${p.display_name}`)
      : (p.source === "vitale"
        ? h("button", { type: "button", onclick: () => qualify(p) }, `Obtenir l'INS de ${p.display_name} (INSi)`)
        : h("span", {}, "INS à obtenir par l'INSi dans votre logiciel"));
    return h("li", { "data-source": p.source, "data-index": p.beneficiary_index ?? "" },
      h("strong", {}, patientLine(p)), ` (${source}) `,
      p.ins ? h("span", { class: "ok-text" }, "INS obtenu par l'INSi") : h("span", {}, "INS non encore obtenu par l'INSi"),
      " ", action);
  }));
  if (!items.length) {
    list.replaceChildren(h("li", {}, data.vitale && data.vitale.present ? "Carte Vitale sans bénéficiaire lisible."
      : "Aucun patient ouvert : insérez la carte Vitale du patient ou ouvrez son dossier dans votre logiciel."));
  }
}
async function qualify(p) {
  try {
    const answer = await api("POST", "/v1/ins/search", { source: "vitale", beneficiary_index: p.beneficiary_index,
      ...(p.card_serial ? { card_serial: p.card_serial } : {}) });
    show(answer.message || "Réponse de l'INSi reçue.", answer.result === "found");
  } catch (e) { show(e.message); }
  await loadDmp();
}
async function openDmp(p) {
  dmp.patient = p;
  dmp.identityStatus = null;
  document.getElementById("dmp-documents").replaceChildren();
  await checkPatientAccess();
}
function insPath(suffix, params = {}, base = "/v1/dmp/") {
  const q = new URLSearchParams(params);
  if (dmp.patient.ins.oid) q.set("oid", dmp.patient.ins.oid);  // else the agent takes the OID INSi gave
  return `${base}${encodeURIComponent(dmp.patient.ins.value)}${suffix}?${q}`;
}
async function checkPatientAccess() {
  const params = { new: "true" };
  if (dmp.identityStatus) params.identity_status = dmp.identityStatus;
  try {
    const access = await api("GET", insPath("/access", params));
    renderAccess(access, dmp.patient);
    if (access.can_read) await loadDocuments();
  } catch (e) { show(e.message); }
}
function gotoTab(name) { selectTab(document.getElementById(`tab-${name}`)); }
// What the doctor can do about each unmet DICA condition, in their words.
function reasonAction(r) {
  const button = (label, onclick) => h("button", { type: "button", onclick }, label);
  switch (r.code) {
    case "cps_absent": case "cps_not_logged_in": return button("Aller aux cartes (code PIN)", () => gotoTab("cards"));
    case "notice_due": return button("Lire l'avis", () => gotoTab("notices"));
    case "ins_not_qualified": return dmp.patient ? button("J'ai vérifié une pièce d'identité du patient : identité qualifiée", () => {
      dmp.identityStatus = "QUAL"; checkPatientAccess();
    }) : null;
    case "consent_missing": return dmp.patient ? button("Le patient, informé, consent à la consultation de son DMP", async () => {
      try { await api("PUT", insPath("/consent", {}, "/v1/patients/"), { dmp_consultation: "granted", informed: true }); }
      catch (e) { show(e.message); }
      await checkPatientAccess();
    }) : null;
    default: return null;
  }
}
function renderAccess(access, patient) {
  const box = document.getElementById("dmp-access");
  const yes = (v) => h("span", { class: v ? "ok-text" : "ko-text" }, v ? "oui" : "non");
  const reasons = h("ul", { class: "reasons" }, (access.reasons || []).map((r) => {
    const action = reasonAction(r);
    const help = r.help && r.help.startsWith("http") ? h("a", { href: r.help, target: "_blank", rel: "noopener noreferrer" }, "En savoir plus") : null;
    return h("li", { "data-code": r.code }, r.message, " ", action, " ", help);
  }));
  box.replaceChildren(
    patient ? h("h3", {}, `DMP de ${patientLine(patient)}`) : "",
    h("dl", {},
      h("dt", {}, "Consultation possible"), h("dd", {}, yes(access.can_read)),
      h("dt", {}, "Alimentation possible"), h("dd", {}, yes(access.can_write)),
      h("dt", {}, "DMP existant"), h("dd", {}, access.dmp_exists == null ? "inconnu" : yes(access.dmp_exists)),
      h("dt", {}, "Identité qualifiée"), h("dd", {}, yes(access.ins_qualified)),
      access.new_documents != null ? [h("dt", {}, "Nouveaux documents depuis la dernière visite"), h("dd", {}, String(access.new_documents))] : []),
    reasons);
}
async function loadDocuments() {
  const box = document.getElementById("dmp-documents");
  const data = await api("GET", insPath("/documents"));
  const rows = (data.items || []).map((d) => h("tr", { "data-entry": d.entry_uuid },
    h("td", {}, d.title || d.type_code || ""), h("td", {}, fmtDate(d.creation_time)), h("td", {}, d.author || ""),
    h("td", {}, h("button", { type: "button", onclick: () => openDocument(d) }, `Ouvrir « ${d.title || "document"} »`))));
  const body = h("tbody", { id: "dmp-documents-rows" }, rows);
  if (!rows.length) emptyRow(body, 4, "Aucun document dans le DMP.");
  box.replaceChildren(h("table", { "aria-labelledby": "h-dmp-documents" },
    h("caption", { id: "h-dmp-documents" }, "Documents du DMP"),
    h("thead", {}, h("tr", {}, ["Document", "Date", "Auteur", "Actions"].map((c) => h("th", { scope: "col" }, c)))), body));
}
async function openDocument(d) {
  // An N1 document holding a PDF (format urn:ihe:iti:xds-sd:pdf:2008) is shown as the PDF; any other as its CDA.
  const pdf = (d.format_code || "").includes(":pdf:");
  const response = await fetch(insPath(`/documents/${encodeURIComponent(d.entry_uuid)}/content`, pdf ? { as: "pdf" } : {}),
    { credentials: "same-origin" });
  if (!response.ok) { show("Document impossible à ouvrir."); return; }
  const url = URL.createObjectURL(await response.blob());
  window.relaisLastDocument = { entry: d.entry_uuid, type: response.headers.get("Content-Type") };  // read by the UI tests
  window.open(url, "_blank", "noopener");
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
async function checkAccess(event) {
  if (event) event.preventDefault();
  const ins = document.getElementById("dmp-ins").value.trim().toUpperCase();
  // The OID is the one INSi gave with this INS: the agent finds it.
  await openDmp({ source: "typed", display_name: `INS ${ins}`, ins: { value: ins, oid: "" } });
}

// ---- traces --------------------------------------------------------------------------------------------
function traceQuery(format) {
  const params = new URLSearchParams({ format });
  for (const [name, id] of [["from", "tr-from"], ["to", "tr-to"], ["ins", "tr-ins"], ["actor", "tr-actor"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(name, name === "to" && value.length === 10 ? value + "T23:59:59Z" : (name === "from" && value.length === 10 ? value + "T00:00:00Z" : value));
  }
  return `/v1/traces?${params}`;
}
function traceActor(t) {
  const a = t.actor || {};
  if (a.rpps || t.actor_rpps || t.rpps) return `RPPS ${a.rpps || t.actor_rpps || t.rpps}`;
  const who = [a.client ? `logiciel ${a.client}` : null, a.workstation ? `poste ${a.workstation}` : null].filter(Boolean);
  return who.join(", ");
}
async function loadTraces(event) {
  if (event) event.preventDefault();
  const body = document.getElementById("traces");
  let data;
  try { data = await api("GET", traceQuery("json")); }
  catch (e) { body.replaceChildren(); emptyRow(body, 6, e.message); return; }
  body.replaceChildren(...(data.items || []).map((t) => h("tr", {},
    h("td", {}, fmtDate(t.at || t.time)), h("td", {}, t.action), h("td", {}, traceActor(t)),
    h("td", {}, t.ins || ""), h("td", {}, t.object || ""), h("td", {}, t.outcome || ""))));
  if (!body.children.length) emptyRow(body, 6, "Aucune trace pour ces critères.");
}
async function exportTraces(format) {
  const response = await fetch(traceQuery(format), { credentials: "same-origin" });
  if (!response.ok) { show("Export impossible."); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: `traces-relais.${format}` });
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- notices (CONF.21) ---------------------------------------------------------------------------------
async function loadNotices() {
  const box = document.getElementById("notices");
  let data;
  try { data = await api("GET", "/v1/notices"); }
  catch (e) { box.replaceChildren(h("p", {}, e.status === 404 ? "Aucun avis." : e.message)); return; }
  const items = data.items || [];
  const due = items.filter((n) => n.due === true || (n.due == null && !n.acknowledged_at));  // due again after 180 days
  document.getElementById("badge-notices").textContent = due.length ? String(due.length) : "";
  box.replaceChildren(...items.map((n) => h("article", { class: "notice", "aria-labelledby": `notice-${n.id}` },
    h("h3", { id: `notice-${n.id}` }, n.title || "Avis"),
    h("p", {}, n.text || ""),
    n.acknowledged_at && n.due === false
      ? h("p", { class: "ok-text" }, `Lu le ${fmtDate(n.acknowledged_at)}`)
      : h("button", { class: "primary", onclick: () => ackNotice(n) }, n.button_text || n.button || "J'ai compris"))));
  if (!items.length) box.replaceChildren(h("p", {}, "Aucun avis à lire."));
}
async function ackNotice(notice) {
  try { await api("POST", `/v1/notices/${encodeURIComponent(notice.id)}/ack`); show("Avis lu et enregistré.", true); }
  catch (e) { show(e.message); }
  await loadNotices();
}

// ---- settings ------------------------------------------------------------------------------------------
// What the doctor may change (GET/PUT /v1/settings); the rest of the configuration is shown, read-only.
const DELAY_KEY = "queue.delay_seconds";
function fmtDelay(seconds) {
  if (seconds % 60) return `${seconds} s`;
  return `${seconds / 60} min`;
}
function showPreferences(prefs) {
  const delay = prefs.items.find((i) => i.key === DELAY_KEY);
  const input = document.getElementById("set-delay");
  input.value = String(Math.round(delay.value / 60));
  document.getElementById("set-delay-hint").textContent = delay.changed
    ? `Votre choix (valeur du fichier de configuration : ${fmtDelay(delay.default)})`
    : `Valeur du fichier de configuration`;
  for (const box of document.querySelectorAll("#settings-form input[type=checkbox]")) {
    box.checked = Boolean(prefs.values[box.dataset.key]);
  }
}
async function saveSettings(event) {
  event.preventDefault();
  const minutes = Number(document.getElementById("set-delay").value);
  const body = { [DELAY_KEY]: Math.round(minutes * 60) };
  for (const box of document.querySelectorAll("#settings-form input[type=checkbox]")) body[box.dataset.key] = box.checked;
  try { showPreferences(await api("PUT", "/v1/settings", body)); show("Réglages enregistrés.", true); }
  catch (e) { show(e.message); }
}
async function resetSettings() {
  const body = { [DELAY_KEY]: null };
  for (const box of document.querySelectorAll("#settings-form input[type=checkbox]")) body[box.dataset.key] = null;
  try { showPreferences(await api("PUT", "/v1/settings", body)); show("Valeurs du fichier de configuration rétablies.", true); }
  catch (e) { show(e.message); }
}
const SECTION_LABELS = { cards: "Cartes", insi: "INSi", dmp: "DMP", psc: "Pro Santé Connect", queue: "File d'envoi",
  habilitation: "Habilitations", practice: "Cabinet (postes)", cda: "Documents CDA", mss: "MSSanté",
  homologation: "Homologation", notifications: "Notifications (valeurs par défaut)" };
function plain(value) {
  if (value === true) return "oui";
  if (value === false) return "non";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "(aucun)";
  if (value && typeof value === "object") return JSON.stringify(value);
  return value === "" || value == null ? "(vide)" : String(value);
}
async function loadSettings() {
  const [config, status, prefs] = await Promise.all([api("GET", "/v1/config"), api("GET", "/v1/status"), api("GET", "/v1/settings")]);
  showPreferences(prefs);
  const rows = [["Version", status.version], ["Poste", config.workstation_id], ["Fichier de configuration", config.source],
    ["Dossier de données", config.data_dir], ["API locale", `http://${config.api.host}:${config.api.port}`],
    ["Clé maîtresse", status.store ? status.store.master_key : config.store.master_key],
    ["Conservation des documents", `${config.store.retention_days} jours`], ["Mode démonstration", config.sandbox ? "oui" : "non"]];
  const list = document.getElementById("settings");
  list.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "")]));
  // Every other section, grouped and collapsed: the integrator's keys, as the configuration file names them.
  const details = Object.entries(config.sections || {}).map(([section, values]) => h("details", { class: "config-section" },
    h("summary", {}, `${SECTION_LABELS[section] || section} [${section}]`),
    h("dl", {}, Object.entries(values).flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, plain(value))]))));
  document.getElementById("config-sections").replaceChildren(...details);
}

// ---- retry all failed ----------------------------------------------------------------------------------
async function retryFailed() {
  try {
    const result = await api("POST", "/v1/orders/retry-failed");
    show(result.retried ? `Nouvel essai demandé pour ${result.retried} envoi(s) en échec` : "Aucun envoi en échec.", true);
  } catch (e) { show(e.message); }
  await loadOrders();
}

// ---- pause ------------------------------------------------------------------------------------------
let queuePaused = false;
function showPaused(paused) {
  queuePaused = paused;
  const button = document.getElementById("queue-pause");
  button.textContent = paused ? "Reprendre les envois" : "Suspendre les envois";
  button.setAttribute("aria-pressed", String(paused));
  document.getElementById("queue-paused").textContent = paused ? "Envois suspendus : rien ne part tant que vous ne reprenez pas." : "";
}
async function togglePause() {
  try { showPaused((await api("POST", queuePaused ? "/v1/queue/resume" : "/v1/queue/pause")).paused); }
  catch (e) { show(e.message); }
}

// ---- live updates --------------------------------------------------------------------------------------
async function refreshStatus() {
  try {
    const status = await api("GET", "/v1/status");
    const queue = status.queue || {};
    const counts = queue.counts || queue;
    const pending = ["scheduled", "ready", "sending", "retrying", "waiting_network", "waiting_card"].reduce((n, k) => n + (Number(counts[k]) || 0), 0);
    showPaused(Boolean(queue.paused));
    // CONF.21: the badge follows the agent's own reckoning (due again 180 days after the last acknowledgement).
    const due = (status.notices || []).filter((n) => n && n.due === true).length;
    document.getElementById("badge-notices").textContent = due ? String(due) : "";
    setAgentState(`Agent ${status.version} connecté${status.sandbox ? " (démonstration)" : ""} · ${pending} envoi(s) en attente`);
  } catch (e) { setAgentState(e.message); }
}
function listen() {
  const source = new EventSource("/v1/events");
  source.addEventListener("order.updated", () => { loadOrders().catch(() => {}); refreshStatus(); });
  for (const type of ["card.inserted", "card.removed", "cps.login"]) source.addEventListener(type, () => {
    if (!document.getElementById("view-cards").hidden) loadCards().catch(() => {});
  });
  for (const type of ["psc.login", "psc.logout"]) source.addEventListener(type, () => { pscState(); loadCards().catch(() => {}); });
  source.addEventListener("notice.due", () => loadNotices().catch(() => {}));
  for (const type of ["queue.paused", "queue.resumed"]) source.addEventListener(type, () => refreshStatus());
  // A carte Vitale inserted or pulled, a patient opened by the LGC: the DMP view offers who is there now.
  for (const type of ["card.inserted", "card.removed", "patient.opened", "patient.closed"]) source.addEventListener(type, () => {
    if (!document.getElementById("view-dmp").hidden) loadDmp().catch(() => {});
  });
  source.addEventListener("settings.changed", () => {
    if (!document.getElementById("view-settings").hidden) loadSettings().catch(() => {});
  });
  source.onerror = () => setAgentState("Agent injoignable : nouvelle tentative…");
  source.onopen = () => refreshStatus();
}

async function main() {
  setupTabs();
  document.getElementById("cps-login").addEventListener("submit", cpsLogin);
  document.getElementById("cps-logout").addEventListener("click", cpsLogout);
  document.getElementById("psc-login").addEventListener("click", pscLogin);
  document.getElementById("psc-logout").addEventListener("click", pscLogout);
  document.getElementById("queue-pause").addEventListener("click", togglePause);
  document.getElementById("retry-failed").addEventListener("click", retryFailed);
  document.getElementById("dmp-access-form").addEventListener("submit", checkAccess);
  document.getElementById("settings-form").addEventListener("submit", saveSettings);
  document.getElementById("settings-reset").addEventListener("click", resetSettings);
  document.getElementById("traces-form").addEventListener("submit", loadTraces);
  document.getElementById("traces-csv").addEventListener("click", () => exportTraces("csv"));
  document.getElementById("traces-json").addEventListener("click", () => exportTraces("json"));
  try { await openSession(); }
  catch (e) { setAgentState(e.message); show(e.message); return; }
  await refreshStatus();
  selectTab(document.getElementById("tab-queue"), false);
  loadNotices().catch(() => {});
  listen();
  setInterval(tickCountdowns, 1000);
  setInterval(refreshStatus, 60000);  // also how a CONF.21 notice falling due while the page is open is noticed
}
document.addEventListener("DOMContentLoaded", main);
