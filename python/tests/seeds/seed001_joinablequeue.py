# Seed 001_4c3e96c635851dad.txt, example 3: JoinableQueue, three producers that join() the
# queue, two daemon consumers that call task_done().
# Changed: the import lines name shmq; sleeps of 1-2 s and 1-3 s are twentieths of that
# (the same proportions: consumers stay slower than producers, which the program relies
# on: p3 is never joined before the daemons are stopped). Prints kept (the daemon
# consumers are killed at exit: run with PYTHONUNBUFFERED=1 to see theirs); the test
# checks all 30 items are consumed.
import time,random
from shmq import Process
from shmq import JoinableQueue


def producer(name,food, q):
    for i in range(10):
        time.sleep(random.randint(1,2) / 20)  # was: random.randint(1,2)
        f = '{}生产的{}号{}'.format(name,i, food)
        q.put(f)
        print('{}生产了{}号{}'.format(name,i, food))
    q.join()  # 阻塞,直到一个队列中的所有数据全部处理完毕,等于一直在等着消费者拿了包子吃完才结束


def consumer(name,q):
    while True:
        food = q.get()
        if food is None:
            print('%s获取到了一个空' %name)
            break
        print('\033[31m%s消费了%s\033[0m' %(name,food))
        time.sleep(random.randint(1,3) / 20)  # was: random.randint(1,3)
        q.task_done()  # 减少一个计数,get方法并不减少计数,put方法会增加计数.这样就会和生产者进程最后同步,大家一起结束.

if __name__ == '__main__':
    queue = JoinableQueue()
    p1 = Process(target=producer, args=('吉祥', '包子',queue,))
    p2 = Process(target=producer, args=('红宝石', '蛋糕',queue,))
    p3 = Process(target=producer, args=('五芳斋', '粽子',queue,))
    p1.start()
    p2.start()
    p3.start()
    c1 = Process(target=consumer,args=('Jenny',queue,))
    c2 = Process(target=consumer,args=('Cony',queue,))
    c1.daemon = True  # 设置为守护进程,主进程代码执行完毕就结束
    c2.daemon = True  # 设置为守护进程,主进程代码执行完毕就结束
    c1.start()
    c2.start()
    p1.join()
    p2.join()
