# Seed 000_b5150c003b7b0392.txt, example 2: "消息传递 使用pipe(管道) 实现" (restaurant front desk
# sends orders through a duplex Pipe, the kitchen answers).
# Changed: the import line names shmq; the front desk's endless `while True` receives one
# answer per order it sent (`for _ in l:`); the kitchen's `while True` has no end, so the
# main process ends it with terminate(), as the seed's commented-out line suggests, before
# joining it. Prints kept (run with PYTHONUNBUFFERED=1 to see the terminated kitchen's).
# -*- coding: utf-8 -*-
"""
(C) rgc
All rights reserved
create time '2021/1/28 10:38'
Usage:
"""
from shmq import Process, Pipe


def pipe_frontend(p: Pipe, l: list):
    """
    餐厅前台通过管道发送/接收数据
    前台负责 发送制作任务,接收 制作完成通知
    :param l:
    :return:
    """
    for item in l:
        print(f'开始发送制作:{item} 任务')
        # 发送
        p.send(item)
    for _ in l:  # was: while True:
        # 接收
        item = p.recv()
        print(item, '可以端给食客享用')


def pipe_backend(p: Pipe):
    """
    餐厅后台通过管道接收,进行处理后,发送数据
    后台负责 接收制作任务,并在制作完成后,发送制作完成通知
    :param p:
    :return:
    """
    while True:
        # 接收
        item = p.recv()
        print(f'开始接收:{item}任务,并进行制作')
        _send = f'制作{item}完成'
        # 发送
        p.send(_send)
        print(f'{_send},推送此消息到管道')


if __name__ == '__main__':
    # 参数 duplex 值为True表示 全双工模式(两头均可发送接收),False表示 单工模式(p[1]只能发送,p[0]只能接收)
    p = Pipe(True)
    p_product = Process(target=pipe_frontend, args=(p[0], ['饺子']))
    p_consumer = Process(target=pipe_backend, args=(p[1],))
    p_product.start()
    p_consumer.start()
    p_product.join()
    p_consumer.terminate()  # was a comment, after the join below
    p_consumer.join()
