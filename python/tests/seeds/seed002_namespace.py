# Seed 002_c52864b522f1332e.txt, example 4 (管理器命名空间): a child changes two attributes
# of a Manager Namespace.
# Changed: the import line is `import shmq as multiprocessing` (the seed's
# `import multiprocessing`; the rest uses the name multiprocessing unchanged). The test
# checks "before Namespace(x=1, y=1)" and "after Namespace(x=6, y=10)".
import shmq as multiprocessing

def Mng_NaSp(using_ns):

   using_ns.x +=5
   using_ns.y *= 10

if __name__ == '__main__':
   manager = multiprocessing.Manager()
   using_ns = manager.Namespace()
   using_ns.x = 1
   using_ns.y = 1

   print ('before', using_ns)
   p = multiprocessing.Process(target = Mng_NaSp, args = (using_ns,))
   p.start()
   p.join()
   print ('after', using_ns)
