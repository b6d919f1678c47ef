/** The part of aedes-persistence-redis (no types of its own) that cluster.ts uses. */
declare module 'aedes-persistence-redis' {
  interface RedisPersistence {
    /** Unsubscribe from the cluster's broadcasts and disconnect from Redis. */
    destroy(): Promise<void>;
  }
  function aedesPersistenceRedis(opts?: Record<string, unknown>): RedisPersistence;
  export default aedesPersistenceRedis;
}
