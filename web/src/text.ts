// Text from evidence and from users, made safe to *read*: characters that change how
// text around them is shown without being seen themselves — bidirectional overrides and
// isolates (the "gpj.exe" trick), zero-width joiners and spaces, the byte-order mark —
// are replaced by a visible ⟨U+XXXX⟩, so an analyst sees what is really there. (Markup
// is never a risk: text is always rendered as text.)

const INVISIBLE = /[\u061C\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/g;

export function visible(text: string): string {
  return text.replace(
    INVISIBLE,
    (c) => `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}⟩`,
  );
}
