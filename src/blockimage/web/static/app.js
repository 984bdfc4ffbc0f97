// The page without a build step. Without JavaScript the forms post and the server answers
// with the whole page; with it, a dropped or picked image is sent at once, the upload's
// progress is shown, and the server's verdict fragment replaces the result.
(() => {
  "use strict";
  const form = document.getElementById("verify-form");
  const input = document.getElementById("verify-file");
  const drop = document.getElementById("drop");
  const result = document.getElementById("result");
  const progress = document.getElementById("progress");

  function say(text) {
    progress.hidden = false;
    progress.textContent = text;
  }

  function send(file) {
    const data = new FormData();
    data.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/verify?fragment=1");
    result.setAttribute("aria-busy", "true");
    say("Uploading " + file.name + "…");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) say("Uploading " + Math.round((100 * e.loaded) / e.total) + " %…");
    };
    xhr.upload.onload = () => say("Verifying " + file.name + "…");
    xhr.onload = () => {
      result.innerHTML = xhr.responseText;  // the server's escaped HTML fragment
      result.removeAttribute("aria-busy");
      progress.hidden = true;
      result.focus();
    };
    xhr.onerror = () => {
      result.removeAttribute("aria-busy");
      say("The server could not be reached; try again.");
    };
    xhr.send(data);
  }

  form.addEventListener("submit", (e) => {
    if (input.files.length) {
      e.preventDefault();
      send(input.files[0]);
    }
  });
  input.addEventListener("change", () => {
    if (input.files.length) send(input.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.remove("over");
    });
  }
  drop.addEventListener("drop", (e) => {
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) send(file);
  });
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });

  document.addEventListener("click", (e) => {
    const button = e.target.closest("button.copy");
    if (!button) return;
    const done = () => {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = label), 1500);
    };
    if (navigator.clipboard) navigator.clipboard.writeText(button.dataset.copy).then(done, () => {});
  });
})();
