// The console's own script: choosing an app shows it at once (the form's button does the
// same without JavaScript).
document.addEventListener("change", (event) => {
  if (event.target.matches("form.apps select")) event.target.form.requestSubmit();
});
