// A button with data-copy="ID" copies the value of the input with that id, and says so.
document.addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-copy]');
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  input.select();
  let copied = false;
  try {
    await navigator.clipboard.writeText(input.value);
    copied = true;
  } catch {
    copied = document.execCommand('copy');
  }
  button.textContent = copied ? 'Copied' : 'Press Ctrl+C to copy';
});
