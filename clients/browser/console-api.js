// The console panels' one way to call the HTTP API with the host's own token:
// JSON in and out; an error answer becomes an Error with the API's `code`.
export async function callApi(token, method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      Accept: "application/json",
      ...(body ? { "Content-Type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const err = new Error(data?.message || response.statusText);
    err.code = data?.code || `http_${response.status}`;
    throw err;
  }
  return data;
}
