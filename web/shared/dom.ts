/** Small DOM and fetch helpers both pages use; no framework (docs/web-ui.md says why). */

type Child = Node | string | number | null | undefined | false;

/**
 * An element with attributes and children. Text is always set as text, never parsed as HTML:
 * user data cannot inject markup.
 */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** An RFC 9457 problem the API answered with, or a network failure, as an Error. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** GET a JSON document from the service; a problem+json answer becomes an ApiError. */
export async function getJson<T>(url: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(url, { ...init, headers: { accept: 'application/json' } });
  if (!response.ok) throw await apiErrorOf(response);
  return (await response.json()) as T;
}

/** The ApiError for a non-2xx response: the problem's detail when the body is one. */
export async function apiErrorOf(response: Response): Promise<ApiError> {
  let detail = `${response.status} ${response.statusText}`;
  let code: string | undefined;
  if (response.headers.get('content-type')?.includes('json')) {
    const problem = (await response.json().catch(() => ({}))) as { detail?: string; code?: string };
    if (problem.detail !== undefined) detail = problem.detail;
    code = problem.code;
  }
  return new ApiError(detail, response.status, code);
}
