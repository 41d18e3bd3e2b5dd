import { afterEach, describe, expect, it, vi } from "vitest";
import { Api, ApiError, authHeaders, errorFrom, withQuery } from "./api";

describe("errorFrom", () => {
  it("carries kanade's error code and message", () => {
    const err = errorFrom(409, '{"error":{"code":"revoked","message":"job `patch` is revoked"}}');
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toBeInstanceOf(Error);
    expect(err.status).toBe(409);
    expect(err.code).toBe("revoked");
    expect(err.message).toBe("job `patch` is revoked");
    expect(err.name).toBe("ApiError");
    expect(err.unauthorized).toBe(false);
  });

  it("knows 401 means unauthorized", () => {
    const err = errorFrom(401, '{"error":{"code":"unauthorized","message":"a token is required"}}');
    expect(err.unauthorized).toBe(true);
    expect(err.code).toBe("unauthorized");
    expect(errorFrom(401, "").unauthorized).toBe(true);
  });

  it("quotes a non-JSON body, such as a proxy's HTML page, shortened", () => {
    const html = `<html><head><title>502 Bad Gateway</title></head><body>${"<p>nginx</p>".repeat(100)}</body></html>`;
    const err = errorFrom(502, `\n  ${html}\n`);
    expect(err.status).toBe(502);
    expect(err.code).toBe("http_error");
    expect(err.message.startsWith("HTTP 502: <html><head><title>502 Bad Gateway")).toBe(true);
    expect(err.message.length).toBe("HTTP 502: ".length + 200);
  });

  it("says just the status for an empty or blank body", () => {
    expect(errorFrom(500, "").message).toBe("HTTP 500");
    expect(errorFrom(503, "  \n\t ").message).toBe("HTTP 503");
    expect(errorFrom(500, "").code).toBe("http_error");
  });

  it("falls back to the body for JSON of the wrong shape", () => {
    const cases: [string, string][] = [
      ['{"message":"flat"}', 'HTTP 500: {"message":"flat"}'],
      ['{"error":"just a string"}', 'HTTP 500: {"error":"just a string"}'],
      ['{"error":null}', 'HTTP 500: {"error":null}'],
      ['{"error":{"code":1,"message":"numeric code"}}', 'HTTP 500: {"error":{"code":1,"message":"numeric code"}}'],
      ['{"error":{"code":"x"}}', 'HTTP 500: {"error":{"code":"x"}}'],
      ['{"error":{"message":"no code"}}', 'HTTP 500: {"error":{"message":"no code"}}'],
      ['{"error":["code","message"]}', 'HTTP 500: {"error":["code","message"]}'],
      ["null", "HTTP 500: null"],
      ["[]", "HTTP 500: []"],
      ["42", "HTTP 500: 42"],
      ['"text"', 'HTTP 500: "text"'],
      ["true", "HTTP 500: true"],
    ];
    for (const [body, message] of cases) {
      const err = errorFrom(500, body);
      expect(err.code, body).toBe("http_error");
      expect(err.message, body).toBe(message);
    }
  });

  it("does not take an error from the prototype", () => {
    const err = errorFrom(500, '{"__proto__":{"error":{"code":"x","message":"y"}}}');
    expect(err.code).toBe("http_error");
  });
});

describe("withQuery", () => {
  it("adds the values that are set, encoded", () => {
    expect(withQuery("/api/results", { pc_id: "pc 1&x=y", status: "failed", limit: 50 })).toBe(
      "/api/results?pc_id=pc+1%26x%3Dy&status=failed&limit=50",
    );
  });

  it("leaves out undefined, null and empty values, but keeps zero", () => {
    expect(withQuery("/api/audit", { actor: undefined, action: null, since: "", limit: 0 })).toBe("/api/audit?limit=0");
  });

  it("returns the path alone without values", () => {
    expect(withQuery("/api/executions", {})).toBe("/api/executions");
    expect(withQuery("/api/executions", { a: undefined })).toBe("/api/executions");
  });
});

describe("authHeaders", () => {
  it("sends the token and the operator", () => {
    expect(authHeaders({ token: "s3cret", operator: "alice" })).toEqual({
      Authorization: "Bearer s3cret",
      "X-Kanade-Operator": "alice",
    });
  });

  it("leaves out what is missing", () => {
    expect(authHeaders(null)).toEqual({});
    expect(authHeaders({ token: "", operator: "" })).toEqual({});
    expect(authHeaders({ token: "", operator: "bob" })).toEqual({ "X-Kanade-Operator": "bob" });
    expect(authHeaders({ token: "t", operator: "" })).toEqual({ Authorization: "Bearer t" });
  });
});

describe("Api.request", () => {
  afterEach(() => vi.unstubAllGlobals());

  function stub(response: () => Response | Promise<Response>) {
    const fetch = vi.fn(async (_url: string, _init?: RequestInit) => response());
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }

  it("sends JSON with the credentials and parses the answer", async () => {
    const fetch = stub(() => new Response('{"exec_id":"e1"}', { status: 201 }));
    const api = new Api({ token: "t", operator: "alice" }, "http://backend");
    const body = await api.exec("patch tuesday/../x", { groups: ["lab"] });
    expect(body).toEqual({ exec_id: "e1" });
    const [url, init] = fetch.mock.calls[0] ?? [];
    // Path segments are encoded: an id cannot walk the API's paths.
    expect(url).toBe("http://backend/api/exec/patch%20tuesday%2F..%2Fx");
    expect(init?.method).toBe("POST");
    expect(init?.body).toBe('{"groups":["lab"]}');
    expect(init?.headers).toMatchObject({
      Accept: "application/json",
      "Content-Type": "application/json",
      Authorization: "Bearer t",
      "X-Kanade-Operator": "alice",
    });
  });

  it("sends no body or content type without a body", async () => {
    const fetch = stub(() => new Response("[]"));
    await new Api(null).agents();
    const init = fetch.mock.calls[0]?.[1];
    expect(init?.body).toBeUndefined();
    expect(init?.headers).not.toHaveProperty("Content-Type");
    expect(init?.headers).not.toHaveProperty("Authorization");
  });

  it("returns undefined for an empty success", async () => {
    stub(() => new Response(null, { status: 204 }));
    await expect(new Api(null).request("POST", "/x")).resolves.toBeUndefined();
  });

  it("throws the backend's error", async () => {
    stub(() => new Response('{"error":{"code":"not_found","message":"no such job"}}', { status: 404 }));
    const err = await new Api(null).jobs().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 404, code: "not_found", message: "no such job" });
  });

  it("throws unreachable when the network fails", async () => {
    stub(() => {
      throw new TypeError("Failed to fetch");
    });
    await expect(new Api(null).session()).rejects.toMatchObject({ status: 0, code: "unreachable" });
  });

  it("throws bad_response for a success that is not JSON", async () => {
    stub(() => new Response("<html>login page</html>", { status: 200 }));
    await expect(new Api(null).session()).rejects.toMatchObject({ status: 200, code: "bad_response" });
  });

  it("reads a 429's Retry-After into the error", async () => {
    stub(() => new Response('{"error":{"code":"too_many_attempts","message":"wait"}}', { status: 429, headers: { "Retry-After": "16" } }));
    await expect(new Api(null).jobs()).rejects.toMatchObject({ status: 429, code: "too_many_attempts", retryAfter: 16 });
  });

  it("asks its authority to renew after a 401 and sends once more only if it did", async () => {
    const fetch = stub(() => new Response("{}", { status: 401 }));
    const renew = vi.fn(async () => false);
    const api = new Api({ headers: async () => ({ Authorization: "Bearer a" }), renew });
    await expect(api.jobs()).rejects.toMatchObject({ status: 401 });
    expect(renew).toHaveBeenCalledWith({ Authorization: "Bearer a" });
    expect(fetch).toHaveBeenCalledTimes(1);
    // Renewed but refused again: the second 401 is the answer, with no third try.
    renew.mockImplementation(async () => true);
    await expect(api.jobs()).rejects.toMatchObject({ status: 401 });
    expect(fetch).toHaveBeenCalledTimes(3);
    expect(renew).toHaveBeenCalledTimes(2);
  });

  it("renews for whole-output downloads too", async () => {
    let token = "a";
    const fetch = vi.fn(async (_url: string, init?: RequestInit) =>
      (init?.headers as Record<string, string>)["Authorization"] === "Bearer b" ? new Response("out") : new Response("{}", { status: 401 }),
    );
    vi.stubGlobal("fetch", fetch);
    const api = new Api({
      headers: async () => ({ Authorization: `Bearer ${token}` }),
      renew: async () => {
        token = "b";
        return true;
      },
    });
    await expect(api.raw("/api/results/r/output", "bytes=0-9", "text")).resolves.toEqual({ body: "out", complete: true });
    expect(fetch.mock.calls[1]?.[1]?.headers).toMatchObject({ Range: "bytes=0-9", Authorization: "Bearer b" });
  });

  it("reads reject's reason only when given", async () => {
    const fetch = stub(() => new Response("{}"));
    const api = new Api(null);
    await api.reject("e1");
    await api.reject("e1", "not today");
    expect(fetch.mock.calls[0]?.[1]?.body).toBeUndefined();
    expect(fetch.mock.calls[1]?.[1]?.body).toBe('{"reason":"not today"}');
  });
});
