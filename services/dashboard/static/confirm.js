// Small behaviours without inline script (the CSP forbids it):
// forms with data-confirm ask first; selects with class "autosubmit" submit their form.
document.querySelectorAll("form.confirm").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
  });
});
document.querySelectorAll("select.autosubmit").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
