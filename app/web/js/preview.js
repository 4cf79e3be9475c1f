// A catalogue's first rows, read in the browser before it is sent: from a CSV or text file directly, from a ZIP
// through its central directory (only manifest.csv is inflated, with the browser's own DecompressionStream).
// The server checks everything again; this only shows a factory what it is about to upload.
const REQUIRED = ["factory_id", "product_id", "image"];
const HEAD_BYTES = 64 * 1024;
const ROWS = 5;

export async function previewCatalogue(file) {
  const read = /\.zip$/i.test(file.name)
    ? await manifestOfZip(file)
    : { text: await file.slice(0, HEAD_BYTES).text(), complete: file.size <= HEAD_BYTES };
  if (read === null) return { problem: "This ZIP has no manifest.csv at its top level or in one folder." };
  const rows = parseCsv(read.text.replace(/^\uFEFF/, ""), ROWS + 1, !read.complete);
  if (!rows.length) return { problem: "The manifest is empty: its first line names the columns." };
  const header = rows[0].map((name) => name.trim().toLowerCase());
  const missing = REQUIRED.filter((name) => !header.includes(name));
  const problem = missing.length ? `The manifest has no ${missing.join(", ")} column: the first line names the columns (${REQUIRED.join(", ")} are needed).` : null;
  return { header, rows: rows.slice(1, ROWS + 1), problem };
}

// RFC 4180 rows; `partial` drops a last row that may have been cut by the byte limit.
export function parseCsv(text, limit, partial) {
  const rows = [];
  let row = [], field = "", quoted = false, i = 0;
  for (; i < text.length && rows.length < limit; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (!partial && rows.length < limit && (field || row.length)) { row.push(field); rows.push(row); }
  return rows.filter((r) => r.some((value) => value.trim()));
}

async function manifestOfZip(file) {
  // The end-of-central-directory record is in the last 22 + 65,535 bytes (its comment is at most that long).
  const tailStart = Math.max(0, file.size - 22 - 65535);
  const tail = new DataView(await file.slice(tailStart).arrayBuffer());
  let end = -1;
  for (let at = tail.byteLength - 22; at >= 0; at--) if (tail.getUint32(at, true) === 0x06054b50) { end = at; break; }
  if (end < 0) throw new Error("This file is not a ZIP archive.");
  const count = tail.getUint16(end + 10, true);
  const size = tail.getUint32(end + 12, true);
  const offset = tail.getUint32(end + 16, true);
  const directory = new DataView(await file.slice(offset, offset + size).arrayBuffer());
  for (let at = 0, n = 0; n < count && at + 46 <= directory.byteLength; n++) {
    const nameLength = directory.getUint16(at + 28, true);
    const name = new TextDecoder().decode(new Uint8Array(directory.buffer, at + 46, nameLength));
    if (/^([^/]+\/)?manifest\.csv$/i.test(name)) {
      return readMember(file, directory.getUint16(at + 10, true), directory.getUint32(at + 20, true), directory.getUint32(at + 42, true));
    }
    at += 46 + nameLength + directory.getUint16(at + 30, true) + directory.getUint16(at + 32, true);
  }
  return null;
}

async function readMember(file, method, compressed, localOffset) {
  const local = new DataView(await file.slice(localOffset, localOffset + 30).arrayBuffer());
  const start = localOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
  const data = file.slice(start, start + compressed);
  if (method === 0) return { text: await data.slice(0, HEAD_BYTES).text(), complete: compressed <= HEAD_BYTES };
  if (method !== 8) throw new Error("The manifest in this ZIP is compressed in a way the preview cannot read.");
  // Inflate only the beginning: the preview needs a few rows, not a manifest of 100,000.
  const reader = data.stream().pipeThrough(new DecompressionStream("deflate-raw")).getReader();
  const chunks = [];
  let bytes = 0;
  let complete = false;
  while (bytes < HEAD_BYTES) {
    const { done, value } = await reader.read();
    if (done) { complete = true; break; }
    chunks.push(value);
    bytes += value.length;
  }
  if (!complete) reader.cancel().catch(() => {});
  return { text: new TextDecoder().decode(await new Blob(chunks).arrayBuffer()), complete };
}
