// Copying text for the analyst: the Clipboard API where the page may use it (a secure
// context), else a hidden text area and the copy command.

export async function copy(text: string): Promise<void> {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "hidden-input";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}
