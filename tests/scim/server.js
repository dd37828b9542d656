// A real SCIM 2.0 server for dingbridge's tests: scimmy (schemas, filters, PATCH, list responses)
// behind scimmy-routers (the RFC 7644 endpoints) on express 4. Not a mock: resources live in a
// JSON file that survives restarts. What scimmy leaves out and strict servers (Okta, Entra ID)
// do is added here (docs/test-stack: 409 "uniqueness" on userName, required "schemas",
// case-insensitive `userName eq`, indexed `externalId eq`), plus a fault switch for the tests.
//
//   node server.js --store FILE --token-file FILE [--port 0] [--host 127.0.0.1]
//                  [--cert PEM --key PEM] [--no-patch]
// Prints one line `{"port": N}` on stdout once listening. The bearer token is read from a file
// (never from argv, which `ps` shows). Admin endpoints (same token):
//   POST /admin/faults {"mode": "429"|"500"|"lost"|"slow"|"refuse_member", "count": N, "retry_after": S,
//                       "delay_ms": MS, "methods": ["POST", ...], "path": "/Groups", "skip": K,
//                       "external_id": X}
//                       -> the next N matching requests (method, path prefix; after skipping K)
//                       fail or are slowed;
//                       lost: the request is applied, but its answer is replaced by a 500 (a
//                       reply lost on the way: the client cannot tell it from a failure);
//                       refuse_member: the Groups writes that name the user with externalId X as
//                       a member are refused (400 invalidValue), as a server's policy may
//   GET  /admin/stats  -> {"requests": N, "writes": N, "faults": N, "by_method": {...},
//                          "by_endpoint": {"PATCH /Groups": N, ...}, "peers": {"127.0.0.1": N}}
//   POST /admin/stats/reset
// SIGTERM/SIGINT flush the store and exit.
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");
const crypto = require("crypto");
const express = require("express");
const SCIMMY = require("scimmy").default ?? require("scimmy");
const SCIMMYRouters = require("scimmy-routers").default ?? require("scimmy-routers");

const ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const DEPARTMENT = "urn:ietf:params:scim:schemas:extension:dingbridge:2.0:Department";
const PATCHOP = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

function parseArgs(argv) {
    const a = {port: 0, host: "127.0.0.1", patch: true};
    for (let i = 2; i < argv.length; ++i) {
        const k = argv[i];
        if (k === "--no-patch") a.patch = false;
        else if (["--port", "--host", "--store", "--token-file", "--cert", "--key"].includes(k)) a[k.slice(2)] = argv[++i];
        else throw new Error(`unknown argument ${k}`);
    }
    if (!a.store || !a["token-file"]) throw new Error("--store and --token-file are required");
    return a;
}

const args = parseArgs(process.argv);
const token = fs.readFileSync(args["token-file"], "utf8").trim();

// ---- store: {users: {id: resource}, groups: {id: resource}}, written a second after a change,
// or later for a large store (at most ~5% of the time spent writing it) ----
let store = {users: {}, groups: {}};
if (fs.existsSync(args.store)) store = JSON.parse(fs.readFileSync(args.store, "utf8"));
let flushTimer = null;
let flushCost = 0;
function flush() {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    const t0 = Date.now();
    fs.writeFileSync(args.store + ".tmp", JSON.stringify(store));
    fs.renameSync(args.store + ".tmp", args.store);
    flushCost = Date.now() - t0;
}
function dirty() {
    if (!flushTimer) flushTimer = setTimeout(flush, Math.max(1000, 20 * flushCost));
}
// Indexes: lower-cased userName -> id, externalId -> id (per type).
const index = {userName: new Map(), users: new Map(), groups: new Map()};

// ---- SCIMMY: resource types, schemas, service provider config ----
SCIMMY.Resources.declare(SCIMMY.Resources.User).extend(SCIMMY.Schemas.EnterpriseUser, false);
const department = new SCIMMY.Types.SchemaDefinition("Department", DEPARTMENT, "DingTalk department", [
    new SCIMMY.Types.Attribute("string", "parent", {description: "externalId of the parent department"}),
    new SCIMMY.Types.Attribute("string", "leaders", {multiValued: true,
        description: "the department's leaders (DingTalk userids, the first one is the manager)"}),
]);
SCIMMY.Resources.declare(SCIMMY.Resources.Group).extend(department, false);

const plain = (instance) => JSON.parse(JSON.stringify(instance));

// `attr eq "value"` on externalId, userName (case-insensitive) or id is answered from the
// indexes; any other filter by scimmy's matcher.
function simpleEq(filter) {
    if (!filter || filter.length !== 1) return null;
    const keys = Object.keys(filter[0]);
    if (keys.length !== 1) return null;
    const cond = filter[0][keys[0]];
    if (!Array.isArray(cond) || cond[0] !== "eq") return null;
    return {attr: keys[0].toLowerCase(), value: String(cond[1])};
}

function egress(kind) {
    return (resource) => {
        const all = store[kind];
        if (resource.id) return [existing(kind, resource.id)];
        let list;
        const eq = simpleEq(resource.filter);
        if (eq && (eq.attr === "externalid" || eq.attr === "id" || (kind === "users" && eq.attr === "username"))) {
            const id = eq.attr === "id" ? eq.value
                       : eq.attr === "externalid" ? index[kind].get(eq.value)
                                                  : index.userName.get(eq.value.toLowerCase());
            list = id && all[id] ? [all[id]] : [];
        } else {
            list = Object.values(all);
            if (resource.filter) list = resource.filter.match(list);
        }
        // Page here: scimmy would otherwise coerce every resource for every page.
        const c = (resource.constraints = resource.constraints ?? {});
        const start = Math.max(c.startIndex ?? 1, 1);
        const count = Math.min(c.count ?? 20, 1000);
        c.totalResults = list.length;
        c.count = count;
        return list.slice(start - 1, start - 1 + count);
    };
}

function stamp(kind, id, body, created) {
    const now = new Date().toISOString();
    const type = kind === "users" ? "User" : "Group";
    return {...body, id, meta: {resourceType: type, created: created ?? now, lastModified: now}};
}

function existing(kind, id) {
    const old = store[kind][id];
    if (!old) throw new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);
    return old;
}

// Index maintenance per kind: drop(resource) and add(resource) for the lookups above.
const indexing = {
    users: {
        drop: (u) => {
            index.userName.delete(String(u.userName).toLowerCase());
            if (u.externalId) index.users.delete(u.externalId);
        },
        add: (u) => {
            index.userName.set(String(u.userName).toLowerCase(), u.id);
            if (u.externalId) index.users.set(u.externalId, u.id);
        },
    },
    groups: {
        drop: (g) => g.externalId && index.groups.delete(g.externalId),
        add: (g) => g.externalId && index.groups.set(g.externalId, g.id),
    },
};

for (const kind of ["users", "groups"]) for (const r of Object.values(store[kind])) indexing[kind].add(r);

// POST (a new id) or PUT/PATCH (resource.id, which must exist) of `body`.
function save(kind, resource, body) {
    let created;
    if (resource.id) {
        const old = existing(kind, resource.id);
        created = old.meta?.created;
        indexing[kind].drop(old);
    }
    const id = resource.id ?? crypto.randomUUID();
    const saved = (store[kind][id] = stamp(kind, id, body, created));
    indexing[kind].add(saved);
    dirty();
    return saved;
}

function remove(kind, id) {
    const old = existing(kind, id);
    delete store[kind][id];
    indexing[kind].drop(old);
    dirty();
}

SCIMMY.Resources.User.egress(egress("users"));
SCIMMY.Resources.User.ingress((resource, instance) => {
    const body = plain(instance);
    delete body.meta;
    delete body.groups;
    const holder = index.userName.get(String(body.userName).toLowerCase());
    if (holder && holder !== resource.id)
        throw new SCIMMY.Types.Error(409, "uniqueness", `userName "${body.userName}" is already in use`);
    return save("users", resource, body);
});
SCIMMY.Resources.User.degress((resource) => {
    remove("users", resource.id);
    for (const g of Object.values(store.groups))
        if (g.members) g.members = g.members.filter((m) => m.value !== resource.id);
});

SCIMMY.Resources.Group.egress(egress("groups"));
SCIMMY.Resources.Group.ingress((resource, instance) => {
    const body = plain(instance);
    delete body.meta;
    for (const m of body.members ?? [])
        if (!store.users[m.value] && !store.groups[m.value])
            throw new SCIMMY.Types.Error(400, "invalidValue", `member ${m.value} does not exist`);
    return save("groups", resource, body);
});
SCIMMY.Resources.Group.degress((resource) => remove("groups", resource.id));

// ---- express app ----
const app = express();
const stats = {requests: 0, writes: 0, faults: 0, by_method: {}, by_endpoint: {}, peers: {}};
let faults = null;

const scimError = (res, status, detail, scimType) =>
    res.status(status).type("application/scim+json").send(JSON.stringify({
        schemas: ["urn:ietf:params:scim:api:messages:2.0:Error"],
        status: String(status),
        ...(scimType ? {scimType} : {}),
        detail,
    }));

function authorized(req) {
    const h = req.get("authorization") ?? "";
    const given = Buffer.from(h.startsWith("Bearer ") ? h.slice(7) : "");
    const want = Buffer.from(token);
    return given.length === want.length && crypto.timingSafeEqual(given, want);
}

const admin = express.Router();
admin.use(express.json({type: ["application/json", "application/scim+json"]}));
admin.use((req, res, next) => (authorized(req) ? next() : scimError(res, 401, "bad token")));
admin.post("/faults", (req, res) => {
    faults = {mode: "500", count: 1, skip: 0, retry_after: 1, delay_ms: 2000, methods: null, ...req.body};
    res.json(faults);
});
admin.get("/stats", (req, res) => res.json(stats));
admin.post("/stats/reset", (req, res) => {
    Object.assign(stats, {requests: 0, writes: 0, faults: 0, by_method: {}, by_endpoint: {}, peers: {}});
    res.json(stats);
});
app.use("/admin", admin);

// Counting, faults and the strictness scimmy does not have: before scimmy-routers.
app.use(express.json({type: ["application/scim+json", "application/json"], limit: "64mb"}));
// Does the fault switch apply to this request?
function faulty(req) {
    if (!faults || faults.count <= 0 || (faults.methods && !faults.methods.includes(req.method))) return false;
    if (faults.path && !req.path.startsWith(faults.path)) return false;
    if (faults.mode !== "refuse_member") return true;
    const id = index.users.get(String(faults.external_id));
    return /^\/Groups\/./.test(req.path) && !!id && JSON.stringify(req.body ?? {}).includes(id);
}

app.use((req, res, next) => {
    const endpoint = `${req.method} /${req.path.split("/")[1] ?? ""}`;
    stats.requests += 1;
    stats.by_method[req.method] = (stats.by_method[req.method] ?? 0) + 1;
    stats.by_endpoint[endpoint] = (stats.by_endpoint[endpoint] ?? 0) + 1;
    const peer = req.socket.remoteAddress;
    stats.peers[peer] = (stats.peers[peer] ?? 0) + 1;
    if (req.method !== "GET") stats.writes += 1;
    if (!authorized(req)) return scimError(res, 401, "Authorization failure: a valid bearer token is required");
    if (faulty(req)) {
        if (faults.skip > 0) {
            faults.skip -= 1;
        } else {
            faults.count -= 1;
            stats.faults += 1;
            if (faults.mode === "429") {
                res.set("Retry-After", String(faults.retry_after));
                return scimError(res, 429, "Too many requests (fault switch)");
            }
            if (faults.mode === "500") return scimError(res, 500, "Internal error (fault switch)");
            if (faults.mode === "refuse_member")
                return scimError(res, 400, `member ${faults.external_id} refused (fault switch)`, "invalidValue");
            if (faults.mode === "slow") return setTimeout(next, faults.delay_ms);
            if (faults.mode === "lost") {
                const end = res.end.bind(res);
                res.end = () => {
                    if (!res.headersSent) {
                        for (const h of ["Content-Length", "ETag", "Location"]) res.removeHeader(h);
                        res.statusCode = 500;
                        res.setHeader("Content-Type", "application/scim+json");
                    }
                    return end(JSON.stringify({schemas: ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                               status: "500", detail: "the answer was lost (fault switch)"}));
                };
                return next();
            }
        }
    }
    next();
});
app.use((req, res, next) => {
    const body = req.body;
    const resource = /^\/(Users|Groups)(\/|$)/.exec(req.path);
    if (!resource || !["POST", "PUT", "PATCH"].includes(req.method)) return next();
    const schemas = Array.isArray(body?.schemas) ? body.schemas : null;
    if (!schemas) return scimError(res, 400, "the request has no \"schemas\" attribute", "invalidSyntax");
    if (req.method === "PATCH" && !args.patch) return scimError(res, 501, "PATCH is not supported by this server");
    if (req.method === "PATCH") {
        if (!schemas.includes(PATCHOP)) return scimError(res, 400, `PATCH needs the schema ${PATCHOP}`, "invalidSyntax");
        return next();
    }
    const core = resource[1] === "Users" ? "urn:ietf:params:scim:schemas:core:2.0:User"
                                         : "urn:ietf:params:scim:schemas:core:2.0:Group";
    if (!schemas.includes(core)) return scimError(res, 400, `"schemas" must list ${core}`, "invalidSyntax");
    for (const urn of [ENTERPRISE, DEPARTMENT])
        if (body[urn] !== undefined && !schemas.includes(urn))
            return scimError(res, 400, `"schemas" must list ${urn} to set its attributes`, "invalidSyntax");
    next();
});
app.use("/", new SCIMMYRouters({
    type: "bearer",
    docUri: "https://datatracker.ietf.org/doc/html/rfc6750",
    handler: () => "admin",
    context: () => ({}),
}));
// After the routers: their constructor announces patch, sort and bulk as supported.
SCIMMY.Config.set({
    patch: args.patch,
    filter: {supported: true, maxResults: 1000},
    sort: false,
    bulk: {supported: false, maxPayloadSize: 64 * 1024 * 1024},
    changePassword: false,
    etag: false,
});

let server;
if (args.cert) {
    server = https.createServer({cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key)}, app);
} else {
    server = http.createServer(app);
}
server.keepAliveTimeout = 60000;
server.listen(Number(args.port), args.host, () => {
    process.stdout.write(JSON.stringify({port: server.address().port}) + "\n");
});
for (const sig of ["SIGTERM", "SIGINT"])
    process.on(sig, () => {
        flush();
        process.exit(0);
    });
