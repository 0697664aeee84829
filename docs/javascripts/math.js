// Math on the site: pymdownx.arithmatex (generic mode) leaves each formula as \( ... \) or
// \[ ... \] in an element of class "arithmatex"; the vendored KaTeX renders it in place, on
// every page Material shows (document$), with nothing fetched.
document$.subscribe(() => {
  document.querySelectorAll(".arithmatex").forEach((element) => {
    if (element.querySelector(".katex")) {
      return; // rendered already
    }
    const tex = element.textContent.trim();
    const display = tex.startsWith("\\[");
    katex.render(tex.slice(2, -2), element, { displayMode: display, throwOnError: false });
  });
});
