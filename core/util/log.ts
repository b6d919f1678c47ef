/** The project logger (pino). LOG_LEVEL sets the level; logs go to stderr. */
import { pino, type Logger } from 'pino';

export type { Logger };

export const log: Logger = pino(
  { level: process.env.LOG_LEVEL ?? 'info', base: undefined },
  pino.destination({ dest: 2, sync: true }),
);
