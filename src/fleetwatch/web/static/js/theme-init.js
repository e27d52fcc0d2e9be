// Applies the saved theme before the first paint (a classic script in <head>, not a module).
(function () {
  try {
    var theme = localStorage.getItem("fleetwatch-theme");
    if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage disabled: follow prefers-color-scheme */ }
})();
