// Evidence from the browser: files and folders dropped or chosen, each hashed (SHA-256,
// in a worker), then sent in 1 MiB parts with BeginUpload/UploadPart (gRPC-web has no
// client streaming). A part that fails is retried from where the server stands
// (GetUploadStatus); dropping the same file again after a reload resumes its upload
// (found by its SHA-256). Files the case already holds are shown as such.

import { useRef, useState } from "preact/hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import { client, errorText } from "./api.js";
import { visible } from "./text.js";
import { IngestService, UploadState } from "./gen/casescope/ingest/v1/ingest_pb.js";
import type { HashAnswer } from "./hash.worker.js";
import { Head } from "./ui.js";

/** Bytes per part: the server's default chunk limit. */
const PART = 1024 * 1024;
/** Attempts of one part before the file is given up (each after a status check). */
const ATTEMPTS = 5;
/** Extensions the server takes. */
const ALLOWED = [".evtx", ".json", ".jsonl", ".ndjson", ".csv", ".zip"];

type Phase = "waiting" | "hashing" | "uploading" | "done" | "present" | "failed" | "skipped";

interface Item {
  key: number;
  file: File;
  phase: Phase;
  done: number;
  message: string;
}

let worker: Worker | null = null;
const pending = new Map<number, (answer: HashAnswer) => void>();

function hasher(): Worker {
  if (!worker) {
    worker = new Worker(new URL("./hash.worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = (event: MessageEvent<HashAnswer>) => pending.get(event.data.id)?.(event.data);
  }
  return worker;
}

function hash(key: number, file: File, progress: (bytes: number) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    pending.set(key, (answer) => {
      if ("hashed" in answer) return progress(answer.hashed);
      pending.delete(key);
      if ("sha256" in answer) resolve(answer.sha256);
      else reject(new Error(answer.error));
    });
    hasher().postMessage({ id: key, file });
  });
}

/** Files under a dropped folder (any depth). */
async function walk(entry: FileSystemEntry, out: File[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((resolve, reject) =>
      (entry as FileSystemFileEntry).file(resolve, reject),
    );
    out.push(file);
  } else if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((resolve, reject) =>
        reader.readEntries(resolve, reject),
      );
      if (batch.length === 0) break;
      for (const child of batch) await walk(child, out);
    }
  }
}

function allowed(name: string): boolean {
  const lower = name.toLowerCase();
  return ALLOWED.some((ext) => lower.endsWith(ext));
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function Upload({ caseId, onUploaded }: { caseId: string; onUploaded: () => void }) {
  const [items, setItems] = useState<Item[]>([]);
  const [over, setOver] = useState(false);
  const next = useRef(1);
  const queue = useRef<Promise<void>>(Promise.resolve());

  const update = (key: number, change: Partial<Item>) =>
    setItems((all) => all.map((item) => (item.key === key ? { ...item, ...change } : item)));

  const send = async (item: Item) => {
    const { key, file } = item;
    const ingest = client(IngestService);
    try {
      update(key, { phase: "hashing", done: 0 });
      const sha256 = await hash(key, file, (bytes) => update(key, { done: bytes }));
      // An upload of this content the server still holds is resumed.
      let resume: string | undefined;
      try {
        const status = await ingest.getUploadStatus({
          caseId: { value: caseId },
          lookup: { case: "declaredSha256", value: sha256 },
        });
        if (status.state === UploadState.RECEIVING) resume = status.uploadId?.value;
      } catch (failure) {
        if (ConnectError.from(failure).code !== Code.NotFound) throw failure;
      }
      const begun = await ingest.beginUpload({
        caseId: { value: caseId },
        fileName: file.name,
        declaredSizeBytes: BigInt(file.size),
        declaredSha256: sha256,
        resumeUploadId: resume ? { value: resume } : undefined,
      });
      if (begun.alreadyPresent) {
        update(key, { phase: "present", done: file.size, message: "already in the case" });
        return;
      }
      const uploadId = begun.status?.uploadId;
      let offset = Number(begun.status?.nextOffset ?? 0n);
      update(key, { phase: "uploading", done: offset });
      let failures = 0;
      for (;;) {
        const end = Math.min(file.size, offset + PART);
        try {
          const data = new Uint8Array(await file.slice(offset, end).arrayBuffer());
          const answer = await ingest.uploadPart({
            caseId: { value: caseId },
            uploadId,
            offset: BigInt(offset),
            data,
          });
          failures = 0;
          offset = Number(answer.nextOffset);
          update(key, { done: offset });
          if (answer.result) {
            update(key, { phase: "done", done: file.size, message: "uploaded" });
            onUploaded();
            return;
          }
        } catch (failure) {
          const error = ConnectError.from(failure);
          const retryable = [Code.Unavailable, Code.DeadlineExceeded, Code.Unknown, Code.Aborted, Code.FailedPrecondition, Code.ResourceExhausted].includes(error.code);
          failures += 1;
          if (!retryable || failures >= ATTEMPTS) throw failure;
          await sleep(500 * 2 ** failures);
          // Where the server stands, then on from there.
          const status = await ingest.getUploadStatus({
            caseId: { value: caseId },
            lookup: { case: "uploadId", value: uploadId! },
          });
          if (status.state !== UploadState.RECEIVING) throw failure;
          offset = Number(status.nextOffset);
        }
      }
    } catch (failure) {
      update(key, { phase: "failed", message: errorText(failure) });
    }
  };

  const add = (files: File[]) => {
    const added: Item[] = files.map((file) => ({
      key: next.current++,
      file,
      phase: allowed(file.name) ? "waiting" : "skipped",
      done: 0,
      message: allowed(file.name) ? "" : `not evidence CaseScope reads (${ALLOWED.join(", ")})`,
    }));
    setItems((all) => [...all, ...added]);
    // One file at a time: each already uses the connection fully.
    for (const item of added) {
      if (item.phase === "waiting") queue.current = queue.current.then(() => send(item));
    }
  };

  const dropped = async (event: DragEvent) => {
    event.preventDefault();
    setOver(false);
    const files: File[] = [];
    const entries = [...(event.dataTransfer?.items ?? [])]
      .map((item) => item.webkitGetAsEntry())
      .filter((entry): entry is FileSystemEntry => entry !== null);
    if (entries.length > 0) {
      for (const entry of entries) await walk(entry, files);
    } else {
      files.push(...(event.dataTransfer?.files ?? []));
    }
    add(files);
  };

  return (
    <section aria-labelledby="upload-title">
      <h2 id="upload-title">Add evidence</h2>
      <div
        class={over ? "drop over" : "drop"}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => void dropped(e)}
      >
        <p>Drop files or folders here (EVTX, JSON/JSONL, CSV, ZIP), or</p>
        <label class="button">
          Choose files
          <input
            class="hidden-input"
            type="file"
            multiple
            aria-label="Choose evidence files"
            onChange={(e) => {
              add([...(e.currentTarget.files ?? [])]);
              e.currentTarget.value = "";
            }}
          />
        </label>{" "}
        <label class="button">
          Choose a folder
          <input
            class="hidden-input"
            type="file"
            // @ts-expect-error: not in the DOM types, supported by every current browser
            webkitdirectory=""
            aria-label="Choose an evidence folder"
            onChange={(e) => {
              add([...(e.currentTarget.files ?? [])]);
              e.currentTarget.value = "";
            }}
          />
        </label>
      </div>
      {items.length > 0 && (
        <table class="grid uploads">
          <Head columns={["File", "Size", "Progress", "Result"]} />
          <tbody>
            {items.map((item) => (
              <tr key={item.key} data-phase={item.phase}>
                <td>{visible(item.file.name)}</td>
                <td class="num">{size(item.file.size)}</td>
                <td>
                  {(item.phase === "hashing" || item.phase === "uploading") && (
                    <progress
                      max={item.file.size || 1}
                      value={item.done}
                      aria-label={`${item.phase} ${visible(item.file.name)}`}
                    />
                  )}{" "}
                  {item.phase}
                </td>
                <td class={item.phase === "failed" ? "error" : undefined}>{visible(item.message)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
