// tocsin console: live updates over server-sent events. Pages work
// without it; this only saves a reload.
(function () {
  "use strict";
  var rows = document.getElementById("incident-rows");
  var table = rows && rows.closest("table");
  var heading = document.querySelector("[data-incident]");
  var params = new URLSearchParams(location.search);
  var url;
  if (table && table.hasAttribute("data-live")) {
    params.delete("before");
    url = "/events?" + params.toString();
  } else if (heading) {
    url = "/events?incident=" + encodeURIComponent(heading.getAttribute("data-incident"));
  } else {
    return;
  }
  var source = new EventSource(url);
  source.addEventListener("reload", function () { location.reload(); });
  source.addEventListener("incident", function (e) {
    var change = JSON.parse(e.data);
    if (heading) {
      // Reload to show the change, unless someone is typing in a form.
      var typing = Array.prototype.some.call(
        document.querySelectorAll("textarea, input[name=note]"),
        function (el) { return el.value !== ""; });
      if (!typing) { location.reload(); }
      return;
    }
    var existing = document.getElementById("row-" + change.key);
    if (change.html === null) {
      if (existing) { existing.remove(); }
      return;
    }
    // The server rendered and escaped the row; parse it as a table row.
    var tpl = document.createElement("template");
    tpl.innerHTML = "<table><tbody>" + change.html + "</tbody></table>";
    var row = tpl.content.querySelector("tr");
    if (!row) { return; }
    row.classList.add("flash");
    if (existing) {
      existing.replaceWith(row);
    } else {
      rows.insertBefore(row, rows.firstChild);
      var empty = document.querySelector("p.empty");
      if (empty) { empty.remove(); }
    }
  });
})();
