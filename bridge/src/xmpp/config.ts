/** The XMPP adapter's settings (placeholder until the adapter lands). */
import { z } from "zod";

export const xmppConfigSchema = z.object({
  service: z.string().min(1),
  domain: z.string().min(1),
  secret: z.string().min(1),
  mucDomain: z.string().min(1),
});
export type XmppConfig = z.infer<typeof xmppConfigSchema>;
