// Render the formulas pymdownx.arithmatex (generic mode) marks, with the KaTeX shipped here.
document$.subscribe(() => {
  document.querySelectorAll(".arithmatex").forEach((element) => {
    renderMathInElement(element, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true },
      ],
    });
  });
});
