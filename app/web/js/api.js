// The HTTP API, as the page uses it: the key (if any) sent as a header, errors as ApiError with the server's words.
const KEY = "sourcelens.key";

export class ApiError extends Error {
  constructor(status, message, retryAfter = 0) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

export const storedKey = () => sessionStorage.getItem(KEY) || "";
export function storeKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export async function call(path, { method = "GET", body, signal, key = storedKey(), json = false } = {}) {
  const headers = key ? { "X-API-Key": key } : {};
  if (json) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, body, signal, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server cannot be reached. Check your connection and try again.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const retryAfter = Number(response.headers.get("Retry-After") || 0);
    throw new ApiError(response.status, describe(response.status, data), retryAfter);
  }
  return data;
}

function describe(status, data) {
  const detail = data && data.detail;
  if (status === 401 || status === 403) return "This server needs an API key: enter yours under “API key”.";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return `The server answered ${status}.`;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(name, value);
  }
  return search.toString();
}
