// Card preview: fetch a fixture's cards and draw them like an EHR's CDS panel.
// Text from cards goes in with textContent; only detailHtml (rendered and sanitised by the server from
// the card's markdown) is inserted as HTML.
"use strict";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderSuggestions(card, status) {
  const box = el("div", "suggestions");
  for (const suggestion of card.suggestions || []) {
    const button = el("button", "suggestion" + (suggestion.isRecommended ? " recommended" : ""), suggestion.label);
    button.type = "button";
    const actions = (suggestion.actions || []).map((a) => a.type + ": " + (a.description || "")).join("; ");
    if (actions) button.title = actions;
    button.addEventListener("click", () => {
      status.textContent = "Accepted: " + suggestion.label + (actions ? " (" + actions + ")" : "");
      box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    });
    box.appendChild(button);
  }
  return box.childElementCount ? box : null;
}

function renderOverride(card, status) {
  const reasons = card.overrideReasons || [];
  if (!reasons.length) return null;
  const box = el("div", "override");
  const id = "override-" + card.uuid;
  const label = el("label", null, "Override reason");
  label.htmlFor = id;
  const select = el("select");
  select.id = id;
  select.appendChild(el("option", null, "choose a reason..."));
  for (const reason of reasons) {
    const option = el("option", null, reason.display || reason.code);
    option.value = reason.code;
    select.appendChild(option);
  }
  const dismiss = el("button", "dismiss", "Dismiss");
  dismiss.type = "button";
  dismiss.addEventListener("click", () => {
    const chosen = select.selectedIndex > 0 ? select.options[select.selectedIndex].text : "no reason given";
    status.textContent = "Overridden: " + chosen;
  });
  box.append(label, select, dismiss);
  return box;
}

function renderCard(card) {
  const node = el("article", "card " + card.indicator);
  node.dataset.topic = card.source && card.source.topic ? card.source.topic.code : "";
  const head = el("div", "card-head");
  head.append(el("span", "indicator", card.indicator), el("p", "summary", card.summary));
  node.appendChild(head);
  if (card.detailHtml) {
    const detail = el("div", "detail");
    detail.innerHTML = card.detailHtml;
    node.appendChild(detail);
  }
  const status = el("div", "status");
  for (const part of [renderSuggestions(card, status), renderOverride(card, status)]) {
    if (part) node.appendChild(part);
  }
  node.appendChild(status);
  const source = card.source || {};
  const line = el("div", "source", "Source: ");
  if (source.url && /^https?:\/\//.test(source.url)) {
    const link = el("a", null, source.label || source.url);
    link.href = source.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    line.appendChild(link);
  } else {
    line.appendChild(document.createTextNode(source.label || ""));
  }
  if (source.topic) line.appendChild(document.createTextNode(" \u00b7 topic " + source.topic.code));
  node.appendChild(line);
  return node;
}

function sameTopics(a, b) {
  return a.length === b.length && a.every((topic, i) => topic === b[i]);
}

async function runFixture(button) {
  const caseId = button.dataset.case;
  document.querySelectorAll(".fixture.selected").forEach((b) => b.classList.remove("selected"));
  button.classList.add("selected");
  const title = document.getElementById("result-title");
  const meta = document.getElementById("result-meta");
  const cards = document.getElementById("cards");
  title.textContent = caseId;
  meta.textContent = "running...";
  cards.replaceChildren();
  let body;
  try {
    const response = await fetch(button.dataset.url, { headers: { Accept: "application/json" } });
    body = await response.json();
    if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
  } catch (error) {
    meta.textContent = "";
    meta.appendChild(el("span", "mismatch", "Could not run this fixture: " + error.message));
    return;
  }
  meta.textContent = body.situation + " \u00b7 " + body.service + " \u00b7 ";
  const match = sameTopics(body.actual, body.expected);
  meta.appendChild(el("span", match ? "match" : "mismatch",
    match ? "cards as expected" : "expected " + (body.expected.join(", ") || "no cards")));
  if (!body.cards.length) {
    cards.appendChild(el("div", "no-cards", "No cards: the service has nothing to say about this order."));
  }
  for (const card of body.cards) cards.appendChild(renderCard(card));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".fixture").forEach((button) => {
    button.addEventListener("click", () => runFixture(button));
  });
  const wanted = new URLSearchParams(window.location.search).get("case");
  const first = wanted && document.getElementById("fixture-" + wanted);
  if (first) runFixture(first);
});
