// Hash routes: "#/runs?status=failed" → {path: "/runs", query}.

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/runs";
  const [path, search = ""] = raw.split("?");
  return { path: path.startsWith("/") ? path : `/${path}`, query: new URLSearchParams(search) };
}

/** The hash of ``path`` with ``query`` (an object or URLSearchParams); empty values are left out. */
export function href(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of query instanceof URLSearchParams ? query : Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  const search = params.toString();
  return `#${path}${search ? `?${search}` : ""}`;
}

export function navigate(path, query) {
  const target = href(path, query);
  if (location.hash !== target) location.hash = target;
}

export const runHref = (id) => href(`/runs/${encodeURIComponent(id)}`);
export const eventHref = (id) => href(`/events/${encodeURIComponent(id)}`);
