import { z } from "zod";

/** `GET /healthz`: the process is up. */
export const healthResponseSchema = z.object({ status: z.literal("ok") }).meta({ id: "HealthResponse" });

/** `GET /readyz`: the database answers and every migration is applied. */
export const readyResponseSchema = z
  .object({
    status: z.enum(["ready", "not_ready"]),
    database: z.boolean(),
    migrations: z.boolean(),
  })
  .meta({ id: "ReadyResponse" });
export type ReadyResponse = z.infer<typeof readyResponseSchema>;
