// SHA-256 of a file, computed off the page's thread and read in slices (a file of any
// size hashes in bounded memory). Answers progress messages, then the hex digest.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

/** Bytes read per step. */
const SLICE = 8 * 1024 * 1024;

export interface HashRequest {
  id: number;
  file: File;
}

export type HashAnswer =
  | { id: number; hashed: number }
  | { id: number; sha256: string }
  | { id: number; error: string };

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<HashRequest>) => void) | null;
  postMessage: (answer: HashAnswer) => void;
};

scope.onmessage = async (event) => {
  const { id, file } = event.data;
  try {
    const hash = sha256.create();
    for (let at = 0; at < file.size; at += SLICE) {
      const bytes = new Uint8Array(await file.slice(at, at + SLICE).arrayBuffer());
      hash.update(bytes);
      scope.postMessage({ id, hashed: Math.min(file.size, at + SLICE) });
    }
    scope.postMessage({ id, sha256: bytesToHex(hash.digest()) });
  } catch (error) {
    scope.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
};
